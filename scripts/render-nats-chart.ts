/**
 * Writes test/fixtures/nats-chart.conf (`make nats-conf`): the nats.conf the vendored NATS chart
 * (deploy/nats/chart) renders from deploy/nats/values.yaml, under a header naming both. Run it
 * after changing the values or re-vendoring the chart (scripts/vendor-nats-chart.sh).
 */
import { writeFileSync } from 'node:fs';
import { CHART_NATS_CONF, renderChartNatsConf } from '../test/helpers/nats-chart.js';

writeFileSync(CHART_NATS_CONF, await renderChartNatsConf());
process.stderr.write(`wrote ${CHART_NATS_CONF}\n`);
