// Package compactor is Isobar's compactor service. It owns the long-term
// shape of each tenant's blocks in the bucket:
//
//   - Vertical compaction: with replication factor 3, three ingesters ship
//     a level-1 block for the same 2h range holding (mostly) the same
//     samples. The compactor merges all blocks of an aligned window of the
//     smallest block range into one, keeping each identical sample once.
//   - Horizontal compaction: once a window of a larger block range (12h,
//     24h by default) is complete, all blocks inside it are merged into one.
//   - Retention: blocks whose data is older than the tenant's retention get a
//     deletion mark.
//   - Deletion: blocks whose deletion mark is older than the deletion delay
//     are deleted, and so are partial blocks (no meta.json) left behind by
//     uploads that died.
//   - The per-tenant bucket index (<tenant>/bucket-index.json.gz) is
//     rewritten at the end of every tenant cycle.
//
// Effects on the bucket, in order, for one compaction: the new block's
// files are uploaded under <tenant>/<ULID>/ with meta.json last (so a block
// without meta.json is an upload in progress or a dead one); then every
// source block gets <tenant>/<ULID>/deletion-mark.json. A crash in between
// leaves the new block next to its unmarked sources: they overlap, so the
// next cycle merges them again, which yields the same samples. A block is
// deleted meta.json first (it stops being a block for anyone listing the
// bucket), then its other files, then deletion-mark.json, so a deletion
// that stops half way is finished by the next cycle.
package compactor
