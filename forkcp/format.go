package forkcp

import "hash/crc32"

// Layout of stream version 1 (docs/checkpoint-format.md). Integers are
// little-endian.
const (
	// Magic opens every stream.
	Magic = "FKCP"
	// Version is the stream version this package writes and reads.
	Version = 1

	preambleSize = 16 // magic 4, version 2, stream flags 2, body length 8
	checksumSize = 4  // CRC-32C
	entryFixed   = 12 // number 4, flags 4, kind 1, reserved 1, description length 2
	headerFixed  = 24 // pid 4, ppid 4, umask 4, signal mask 8, cwd length 4

	// Stream flags: which optional header sections are present.
	streamArgv  = 1 << 0
	streamEnv   = 1 << 1
	streamFlags = streamArgv | streamEnv

	maxUmask = 0o777
)

// castagnoli is the CRC-32C table of the checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// minBody is the smallest body (everything after the preamble) a stream
// with these flags can have: the fixed header, the counts present, an
// empty table, an empty payload and the checksum.
func minBody(flags uint16) int64 {
	n := int64(headerFixed + 4 + 8 + checksumSize)
	if flags&streamArgv != 0 {
		n += 4
	}
	if flags&streamEnv != 0 {
		n += 4
	}
	return n
}
