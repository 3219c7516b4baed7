# One image for every role: `torii controller`, `torii auth-callout`, `torii worker`
# (the chart passes the role as the first argument). Build and push: docs/install.md, step 2.
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript with the dev dependencies -------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && chmod 0755 dist/cli.js

# ---- runtime: production dependencies, compiled code, nothing else ----------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY charts/torii/crds ./charts/torii/crds
COPY examples/rooms ./examples/rooms
RUN ln -s /app/dist/cli.js /usr/local/bin/torii
# Numeric, so that runAsNonRoot can verify it; no home, no shell needed.
USER 10001:10001
# /healthz, /readyz, /metrics
EXPOSE 9090
ENTRYPOINT ["torii"]
CMD ["--help"]
LABEL org.opencontainers.image.title="torii" \
      org.opencontainers.image.description="Torii: Room controller, NATS auth callout and event workers" \
      org.opencontainers.image.source="https://github.com/torii-nihongo/torii" \
      org.opencontainers.image.licenses="UNLICENSED"
