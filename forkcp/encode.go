package forkcp

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
)

var le = binary.LittleEndian

// Encode returns cp as a version 1 stream. It fails only on values the
// format cannot carry: entries out of order or out of range, unknown flags
// or kinds, NUL bytes in strings, an umask above 0777.
//
// The receiver's Limits are not applied here: a stream may be valid and
// still too large for a particular decoder.
func Encode(cp *Checkpoint) ([]byte, error) {
	return encode(&cp.Header, entryList(cp.Entries), cp.Payload)
}

// EncodeSnapshot returns the stream of a snapshot's table with hdr and
// payload. hdr may be nil: an empty header.
func EncodeSnapshot(s *Snapshot, hdr *Header, payload []byte) ([]byte, error) {
	if s.Released() {
		return nil, ErrReleased
	}
	if hdr == nil {
		hdr = &Header{}
	}
	return encode(hdr, s, payload)
}

func encode(hdr *Header, es entrySource, payload []byte) ([]byte, error) {
	size, err := encodedSize(hdr, es, payload)
	if err != nil {
		return nil, err
	}
	var flags uint16
	if hdr.Argv != nil {
		flags |= streamArgv
	}
	if hdr.Env != nil {
		flags |= streamEnv
	}
	b := make([]byte, 0, size)
	b = append(b, Magic...)
	b = le.AppendUint16(b, Version)
	b = le.AppendUint16(b, flags)
	b = le.AppendUint64(b, uint64(size-preambleSize))

	b = le.AppendUint32(b, uint32(hdr.Pid))
	b = le.AppendUint32(b, uint32(hdr.Ppid))
	b = le.AppendUint32(b, hdr.Umask)
	b = le.AppendUint64(b, hdr.SigMask)
	b = appendString(b, hdr.Cwd)
	if hdr.Argv != nil {
		b = appendStrings(b, hdr.Argv)
	}
	if hdr.Env != nil {
		b = appendStrings(b, hdr.Env)
	}

	n := es.Len()
	b = le.AppendUint32(b, uint32(n))
	for i := range n {
		e := es.Entry(i)
		b = le.AppendUint32(b, uint32(e.Number))
		b = le.AppendUint32(b, uint32(e.Flags))
		b = append(b, byte(e.Kind), 0)
		b = le.AppendUint16(b, uint16(len(e.Description)))
		b = append(b, e.Description...)
	}

	b = le.AppendUint64(b, uint64(len(payload)))
	b = append(b, payload...)
	b = le.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if len(b) != size {
		return nil, fmt.Errorf("forkcp: encode: wrote %d bytes, computed %d", len(b), size)
	}
	return b, nil
}

// encodedSize checks every value against the format and returns the
// stream's length.
func encodedSize(hdr *Header, es entrySource, payload []byte) (int, error) {
	fail := func(format string, args ...any) (int, error) {
		return 0, fmt.Errorf("forkcp: encode: "+format, args...)
	}
	if hdr.Pid < 0 || hdr.Pid > math.MaxUint32 || hdr.Ppid < 0 || hdr.Ppid > math.MaxUint32 {
		return fail("pid %d or ppid %d out of range", hdr.Pid, hdr.Ppid)
	}
	if hdr.Umask > maxUmask {
		return fail("umask %#o above 0777", hdr.Umask)
	}
	size := preambleSize + headerFixed + len(hdr.Cwd)
	if err := checkString("cwd", hdr.Cwd); err != nil {
		return 0, err
	}
	for _, list := range []struct {
		name string
		ss   []string
	}{{"argv", hdr.Argv}, {"env", hdr.Env}} {
		if list.ss == nil {
			continue
		}
		if len(list.ss) > math.MaxUint32 {
			return fail("%s: %d strings", list.name, len(list.ss))
		}
		size += 4
		for i, s := range list.ss {
			if err := checkString(fmt.Sprintf("%s[%d]", list.name, i), s); err != nil {
				return 0, err
			}
			size += 4 + len(s)
		}
	}
	size += 4
	prev := -1
	for i := range es.Len() {
		e := es.Entry(i)
		switch {
		case e.Number < 0 || e.Number > MaxNumber:
			return fail("handle %d: number %d outside 0..%d", i, e.Number, MaxNumber)
		case e.Number <= prev:
			return fail("handle %d: number %d not above the previous %d", i, e.Number, prev)
		case e.Flags&^knownFlags != 0:
			return fail("handle %d (number %d): unknown flags %#x", i, e.Number, uint32(e.Flags))
		case !e.Kind.valid():
			return fail("handle %d (number %d): invalid kind %d", i, e.Number, uint8(e.Kind))
		case len(e.Description) > MaxDescription:
			return fail("handle %d (number %d): description of %d bytes (at most %d)", i, e.Number, len(e.Description), MaxDescription)
		}
		prev = e.Number
		size += entryFixed + len(e.Description)
	}
	size += 8 + len(payload) + checksumSize
	return size, nil
}

func checkString(name, s string) error {
	if len(s) > math.MaxUint32 {
		return fmt.Errorf("forkcp: encode: %s: %d bytes", name, len(s))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("forkcp: encode: %s contains a NUL byte", name)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = le.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = le.AppendUint32(b, uint32(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}
