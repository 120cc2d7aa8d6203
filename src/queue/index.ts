// Indexing on many machines: a coordinator and any number of workers sharing a Redis (BullMQ) queue
// and a work folder on shared storage (contract in ARCHITECTURE.md, "Many machines").
export { indexWithQueue, type FailedShard, type QueueIndexOptions, type QueueIndexResult, type QueueProgress } from './coordinator.js';
export { runWorker, processShard, type ShardResult, type WorkerOptions } from './worker.js';
export { queueName, jobId, parseRedisUrl, connectionOptions, defaultWorkDir, type ShardJob } from './contract.js';
export { planShards, DEFAULT_SHARD_SIZE, type PlannedShard } from './plan.js';
export { readShardFile, writeShardFile, shardFileName, type ShardData, type ShardHeader, type ShardRow } from './shard_file.js';
export { readTar, type TarMember } from './tar.js';
