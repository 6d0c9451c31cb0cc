/**
 * `GET /v1/backup` and `GET /v1/state-hash` (docs/http-api.md, docs/operations.md "Back up and
 * restore"). Both are served by the node asked, never forwarded: a follower's read barrier asks
 * the leader (ReadIndex), and streaming the image from a follower spares the leader the work.
 */
import { Readable } from 'node:stream';
import type { RaftKvNode } from '@raftkv/node';
import type { FastifyInstance } from 'fastify';
import { consistencyParam, onlyParams } from './request.js';

/** What the backup routes need of a node (a RaftKvNode has it). */
export type BackupNode = Pick<RaftKvNode, 'id' | 'backup' | 'stateHash'>;

export const BACKUP_INDEX_HEADER = 'x-raftkv-backup-index';
export const BACKUP_TERM_HEADER = 'x-raftkv-backup-term';

/**
 * A client that stops reading a backup holds a LevelDB snapshot of the node open (its files are
 * kept until it closes). Past this long without a byte going out, the response is destroyed and
 * the snapshot released; a live client reading at any pace resets it with every chunk.
 */
export const BACKUP_IDLE_TIMEOUT_MS = 60_000;

type Query = Readonly<Record<string, unknown>>;

export function registerBackupRoutes(app: FastifyInstance, node: BackupNode): void {
  app.get('/v1/backup', async (request, reply) => {
    onlyParams(request.query as Query, []);
    // Errors before the first byte (no leader for the read barrier, a timeout) are ordinary JSON
    // errors. One during the stream cuts the response short: the file then fails to verify.
    const backup = await node.backup();
    // However the response ends (streamed whole, client gone, idle timeout), the node's
    // snapshot is released: a stream dropped before its first read would not do it itself.
    reply.raw.once('close', () => void backup.close().catch((error: unknown) => request.log.warn({ err: error }, 'releasing a backup snapshot failed')));
    reply.raw.setTimeout(BACKUP_IDLE_TIMEOUT_MS, () => reply.raw.destroy(new Error(`backup stream idle for ${BACKUP_IDLE_TIMEOUT_MS} ms`)));
    return reply
      .header(BACKUP_INDEX_HEADER, String(backup.index))
      .header(BACKUP_TERM_HEADER, String(backup.term))
      .header('content-disposition', `attachment; filename="raftkv-${node.id}-${backup.index}.rkvbackup"`)
      .type('application/octet-stream')
      .send(Readable.from(backup.chunks, { objectMode: false }));
  });

  app.get('/v1/state-hash', async (request) => {
    const query = request.query as Query;
    onlyParams(query, ['consistency']);
    return node.stateHash({ consistency: consistencyParam(query) });
  });
}
