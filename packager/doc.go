// Package packager turns a results tree into cuts: immutable, checksummed,
// signed snapshots kept in a local content-addressed store, each with an
// incremental package from the previous cut.
//
// The nouns:
//
//   - A [Manifest] lists every regular file of a cut (path, size, SHA-256) in
//     canonical JSON, chained to the previous cut by its hash and signed with
//     ed25519. Its own SHA-256 names the cut's content.
//   - A [Delta] is what changed between two manifests: new or changed entries
//     and deleted paths. It is computed from manifests only.
//   - A package is a delta written as one zstd-compressed tar archive (it
//     decodes with `zstd -d | tar -x`) holding the manifest, its signature, a
//     description of the delta and the content of every new or changed file.
//     Incompressible content (images, archives) is stored in raw zstd blocks,
//     so it costs no compression CPU.
//   - The [Store] under state_dir holds file content by SHA-256 (objects),
//     and one directory per cut. A cut appears in the store atomically: its
//     directory is renamed into place only after everything it names is
//     durable, so a crash at any moment leaves either the whole cut or none.
package packager
