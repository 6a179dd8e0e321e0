#!/usr/bin/env node
'use strict';
// Container health check for the gantry worker (Dockerfile HEALTHCHECK, compose healthcheck).
//
// Healthy means: the worker's Temporal server answers with the worker's own connection settings (address,
// namespace, TLS, API key from the same environment variables), and the server lists a poller from this
// container (identity `<pid>@<hostname>`, the SDK's default) on gantry's task queue. A worker that lost its
// server, or stopped polling, turns unhealthy; the poller list forgets a silent worker after a few minutes.
//
// Exit 0 when healthy, 1 with a one-line reason otherwise.
const os = require('node:os');
const path = require('node:path');

// The compiled modules (dist/src in the image); tests point this at the TypeScript sources.
const root = process.env.GANTRY_MODULES || path.join(__dirname, '..', 'dist', 'src');
const { temporalSettings, connectClient } = require(path.join(root, 'connection'));
const { TASK_QUEUE } = require(path.join(root, 'shared', 'release'));

const TASK_QUEUE_KIND_NORMAL = 1;
const TASK_QUEUE_TYPES = { workflow: 1, activity: 2 };

async function main() {
  const settings = temporalSettings();
  const taskQueue = process.env.GANTRY_TASK_QUEUE || TASK_QUEUE;
  const connection = await connectClient(settings);
  try {
    const deadline = () => new Date(Date.now() + 5000);
    const mine = [];
    for (const [kind, type] of Object.entries(TASK_QUEUE_TYPES)) {
      const res = await connection.withDeadline(deadline(), () =>
        connection.workflowService.describeTaskQueue({
          namespace: settings.namespace,
          taskQueue: { name: taskQueue, kind: TASK_QUEUE_KIND_NORMAL },
          taskQueueType: type,
        }));
      for (const p of res.pollers || []) {
        if (String(p.identity || '').endsWith(`@${os.hostname()}`)) mine.push(kind);
      }
    }
    if (mine.length === 0) {
      throw new Error(`no poller from ${os.hostname()} on task queue ${taskQueue} in namespace ${settings.namespace} (worker still starting, or stuck)`);
    }
    process.stdout.write(`healthy: polling ${taskQueue} (${[...new Set(mine)].join(', ')}) on ${settings.address}\n`);
  } finally {
    await connection.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`unhealthy: ${err && err.message ? err.message.split('\n')[0] : String(err)}\n`);
    process.exit(1);
  },
);
