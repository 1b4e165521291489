// Package forkcp moves a process's descriptors to another process without
// the race that breaks multithreaded fork in library OSes.
//
// The race: a checkpoint records a descriptor in one step and sends it in a
// later one; a close on another thread in between frees or replaces what
// was recorded, and the send then passes a dead or a different file.
// forkcp closes it by construction:
//
//   - A Handle is one OS descriptor with its metadata and a reference
//     count. Its descriptor is closed when the last reference is dropped,
//     never before.
//   - A HandleMap maps numbers to Handles behind one lock. Its Snapshot
//     copies every entry and takes a reference on each handle while it
//     holds that lock, and for nothing else. Whatever Close, Dup2 or
//     InstallAt do to the map afterwards, the snapshot's handles stay open
//     until Snapshot.Release: same numbers, same open files.
//   - The checkpoint stream (version 1, specified byte for byte in
//     docs/checkpoint-format.md) carries a header, the handle table and an
//     application payload. Decode is strict and bounded by Limits: a
//     truncated, corrupt, oversized or wrong-version stream is an error,
//     never a panic and never a partly built map.
//   - Send and Receive carry a snapshot and its descriptors over an AF_UNIX
//     socket with SCM_RIGHTS, in batches the kernel accepts, received with
//     MSG_CMSG_CLOEXEC. A process forkless starts needs no socket at all:
//     the descriptors are placed at their numbers by spawn file actions.
//   - Fork gives Go programs, which cannot fork, a real fork of their
//     descriptor table: it snapshots a map, starts the current executable
//     with the spawn engine and hands it the checkpoint; Restore, called
//     early in the child's main, returns the map and the payload.
package forkcp
