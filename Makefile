# Torii — see README.md. Every target installs what it needs (npm packages, external servers).
SHELL := /bin/bash
.DEFAULT_GOAL := help
NODE_MODULES_STAMP := node_modules/.installed
TOOLS_STAMP := .tools/bin/nats-server
JEST := node --experimental-vm-modules node_modules/jest/bin/jest.js
JEST_RESULTS := test-results/jest.json

.PHONY: help
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(NODE_MODULES_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: deps
deps: $(NODE_MODULES_STAMP) ## install npm packages

.PHONY: tools
tools: ## install nats-server, nats, etcd, kube-apiserver, kubectl, helm into ~/.cache/torii
	scripts/install-tools.sh

.PHONY: build
build: deps ## compile TypeScript into dist/
	npm run --silent build

.PHONY: dev
dev: build ## run Torii on this machine (local nats-server with auth callout); Ctrl-C stops it
	scripts/install-tools.sh nats-server
	node dist/cli.js dev

.PHONY: lint
lint: deps ## ESLint and Prettier
	npx eslint .
	npx prettier --check .

.PHONY: typecheck
typecheck: deps ## tsc over src, test and bench
	npm run --silent typecheck

.PHONY: test
test: deps tools lint typecheck build ## every test: lint, typecheck, unit and integration (real servers)
	@mkdir -p $(dir $(JEST_RESULTS))
	$(JEST) --ci --json --outputFile=$(JEST_RESULTS)

.PHONY: test-unit
test-unit: deps ## unit tests only
	$(JEST) --selectProjects unit

.PHONY: bench
bench: deps tools build ## run every benchmark under bench/ (each prints one JSON line)
	@for b in bench/*.ts; do [ -e "$$b" ] || continue; echo "# $$b" >&2; npx tsx "$$b" || exit 1; done

.PHONY: clean
clean: ## remove build output (keeps the tools cache)
	rm -rf dist test-results coverage
