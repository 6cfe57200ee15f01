// BullMQ, the anchor row: the fastest Redis queue in any language, on the same valkey server.
//
// Installed by `make peers` into bench/.peers/bullmq (npm, pinned with ioredis, its usual
// driver). Modes, as the Python peers' (one "RESULT <json>" line on stdout, "READY" for the
// worker):
//   enqueue       `queue.add` from --concurrency concurrent lanes, no worker
//   enqueue-bulk  `queue.addBulk` of --batch jobs from --lanes concurrent lanes, no worker
//   drain         the same producer as enqueue while a worker process runs; done when nothing
//                 waits or runs (`getJobCounts`, one script)
//   drain-bulk    the same with the addBulk producer
//   worker        one Worker at --concurrency, echoing the job's data
// Documented fast settings: removeOnComplete / removeOnFail, so finished jobs are not kept.
"use strict";

const path = require("path");
const { createRequire } = require("module");

const peerRequire = createRequire(path.join(__dirname, ".peers", "bullmq", "package.json"));
const { Queue, Worker } = peerRequire("bullmq");

const QUEUE = "bench";
const DATA = { hello: "world", n: 1 };
const JOB_OPTS = { removeOnComplete: true, removeOnFail: true };

function args() {
  const out = { mode: process.argv[2], n: 20000, concurrency: 50, batch: 100, lanes: 8,
    url: "redis://127.0.0.1:6379", timeLimit: 100 };
  const argv = process.argv.slice(3);
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "").replace(/-(\w)/g, (_, c) => c.toUpperCase());
    out[name] = name === "url" ? argv[i + 1] : Number(argv[i + 1]);
  }
  return out;
}

function connection(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null };
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function emit(result) {
  process.stdout.write("RESULT " + JSON.stringify(result) + "\n");
}

async function produce(queue, a, deadline) {
  // Adds a.n jobs: single adds from a.concurrency lanes, or addBulk from a.lanes lanes.
  let left = a.n;
  const bulk = a.mode.endsWith("bulk");
  const lane = async () => {
    while (left > 0 && Date.now() < deadline) {
      if (bulk) {
        const k = Math.min(a.batch, left);
        left -= k;
        const jobs = [];
        for (let i = 0; i < k; i++) jobs.push({ name: "echo", data: DATA, opts: JOB_OPTS });
        await queue.addBulk(jobs);
      } else {
        left -= 1;
        await queue.add("echo", DATA, JOB_OPTS);
      }
    }
  };
  const lanes = [];
  for (let i = 0; i < (bulk ? a.lanes : a.concurrency); i++) lanes.push(lane());
  await Promise.all(lanes);
  return a.n - Math.max(left, 0);
}

async function idle(queue, deadline) {
  while (Date.now() < deadline) {
    const c = await queue.getJobCounts("wait", "active", "delayed", "prioritized", "paused");
    if (c.wait + c.active + c.delayed + c.prioritized + c.paused === 0) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return false;
}

async function main() {
  const a = args();
  const conn = connection(a.url);
  if (a.mode === "worker") {
    const worker = new Worker(QUEUE, async (job) => job.data,
      { connection: conn, concurrency: a.concurrency });
    await worker.waitUntilReady();
    process.stdout.write("READY\n");
    const stop = async () => { await worker.close(); process.exit(0); };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    return;
  }
  const queue = new Queue(QUEUE, { connection: conn });
  await queue.waitUntilReady();
  const deadline = Date.now() + a.timeLimit * 1000;
  const cpu0 = cpuSeconds();
  const t0 = process.hrtime.bigint();
  const n = await produce(queue, a, deadline);
  const enqueueElapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  let finished = true;
  if (a.mode.startsWith("drain")) finished = await idle(queue, deadline);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  emit({ n, enqueue_elapsed: enqueueElapsed, elapsed, finished, cpu_s: cpuSeconds() - cpu0,
    version: peerRequire("bullmq/package.json").version });
  await queue.close();
}

main().catch((err) => { console.error(err); process.exit(1); });
