package forkcp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reseal recomputes a stream's checksum after a test edited it, so that
// the decoder gets past the checksum to the field under test.
func reseal(b []byte) []byte {
	b = bytes.Clone(b)
	if len(b) >= preambleSize+checksumSize {
		end := len(b) - checksumSize
		le.PutUint32(b[end:], crc32.Checksum(b[:end], castagnoli))
	}
	return b
}

// manyEntries returns n entries at numbers 0, 2, 4... with every kind and
// both flag values.
func manyEntries(n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Number: 2 * i, Flags: Flags(i % 2), Kind: Kind(1 + i%5), Description: strings.Repeat("d", i%7)}
	}
	return es
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cp   Checkpoint
	}{
		{"empty", Checkpoint{}},
		{"full header", Checkpoint{Header: Header{Pid: 4242, Ppid: 1, Cwd: "/work/main", Umask: 0o022,
			SigMask: 1<<(15-1) | 1<<63, Argv: []string{"prog", "-x", ""}, Env: []string{"A=1", "B="}}}},
		{"largest ids", Checkpoint{Header: Header{Pid: 1<<32 - 1, Ppid: 1<<32 - 1, Umask: 0o777, SigMask: ^uint64(0)}}},
		{"argv only", Checkpoint{Header: Header{Argv: []string{"a"}}}},
		{"env only", Checkpoint{Header: Header{Env: []string{"E=1"}}}},
		{"empty argv and env recorded", Checkpoint{Header: Header{Argv: []string{}, Env: []string{}}}},
		{"one handle", Checkpoint{Entries: []Entry{{Number: 3, Flags: FlagCloexec, Kind: KindSocket, Description: "127.0.0.1:80"}}}},
		{"number 0 and MaxNumber", Checkpoint{Entries: []Entry{{Number: 0, Kind: KindFile}, {Number: MaxNumber, Kind: KindOther}}}},
		{"longest description", Checkpoint{Entries: []Entry{{Number: 1, Kind: KindDir, Description: strings.Repeat("x", MaxDescription)}}}},
		{"more handles than one message", Checkpoint{Entries: manyEntries(1000)}},
		{"payload", Checkpoint{Payload: []byte("state")}},
		{"binary payload of 1 MiB", Checkpoint{Payload: bytes.Repeat([]byte{0, 1, 0xff}, 1<<20/3)}},
		{"everything", Checkpoint{Header: Header{Pid: 7, Cwd: "/", Argv: []string{"x"}}, Entries: manyEntries(300), Payload: []byte{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(&tt.cp)
			require.NoError(t, err)
			got, err := Decode(b, nil)
			require.NoError(t, err)
			if tt.cp.Entries == nil {
				tt.cp.Entries = []Entry{}
			}
			assert.Equal(t, tt.cp, *got)
			again, err := Encode(got)
			require.NoError(t, err)
			assert.Equal(t, b, again, "the encoding is canonical")
			rd, err := ReadStream(bytes.NewReader(append(bytes.Clone(b), "next"...)), nil)
			require.NoError(t, err)
			assert.Equal(t, b, rd, "ReadStream reads exactly one stream")
		})
	}
}

// TestSpecExamples checks the examples of docs/checkpoint-format.md byte
// for byte, in both directions.
func TestSpecExamples(t *testing.T) {
	tests := []struct {
		name string
		cp   Checkpoint
		hex  string
	}{
		{"empty", Checkpoint{Entries: []Entry{}},
			"464b4350010000002800000000000000" +
				"00000000000000000000000000000000" +
				"00000000000000000000000000000000" +
				"0000000025ad763f"},
		{"one socket", Checkpoint{
			Header:  Header{Pid: 4242, Ppid: 1, Cwd: "/srv", Umask: 0o22},
			Entries: []Entry{{Number: 3, Flags: FlagCloexec, Kind: KindSocket, Description: "tcp"}},
			Payload: []byte("hi"),
		},
			"464b4350010000003d00000000000000" +
				"92100000010000001200000000000000" +
				"00000000040000002f73727601000000" +
				"03000000010000000400030074637002" +
				"0000000000000068695a016185"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := hex.DecodeString(tt.hex)
			require.NoError(t, err)
			b, err := Encode(&tt.cp)
			require.NoError(t, err)
			assert.Equal(t, want, b)
			got, err := Decode(want, nil)
			require.NoError(t, err)
			assert.Equal(t, tt.cp, *got)
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		cp   Checkpoint
		msg  string
	}{
		{"numbers out of order", Checkpoint{Entries: []Entry{{Number: 5, Kind: KindFile}, {Number: 4, Kind: KindFile}}}, "not above"},
		{"duplicate number", Checkpoint{Entries: []Entry{{Number: 5, Kind: KindFile}, {Number: 5, Kind: KindFile}}}, "not above"},
		{"negative number", Checkpoint{Entries: []Entry{{Number: -1, Kind: KindFile}}}, "outside"},
		{"number above MaxNumber", Checkpoint{Entries: []Entry{{Number: MaxNumber + 1, Kind: KindFile}}}, "outside"},
		{"unknown flags", Checkpoint{Entries: []Entry{{Number: 1, Kind: KindFile, Flags: 2}}}, "unknown flags"},
		{"kind 0", Checkpoint{Entries: []Entry{{Number: 1}}}, "invalid kind"},
		{"kind 6", Checkpoint{Entries: []Entry{{Number: 1, Kind: 6}}}, "invalid kind"},
		{"long description", Checkpoint{Entries: []Entry{{Number: 1, Kind: KindFile, Description: strings.Repeat("x", MaxDescription+1)}}}, "description"},
		{"NUL in cwd", Checkpoint{Header: Header{Cwd: "/a\x00b"}}, "cwd contains a NUL"},
		{"NUL in argv", Checkpoint{Header: Header{Argv: []string{"ok", "b\x00"}}}, "argv[1]"},
		{"NUL in env", Checkpoint{Header: Header{Env: []string{"\x00"}}}, "env[0]"},
		{"umask", Checkpoint{Header: Header{Umask: 0o1000}}, "umask"},
		{"negative pid", Checkpoint{Header: Header{Pid: -1}}, "pid"},
		{"pid above 32 bits", Checkpoint{Header: Header{Ppid: 1 << 32}}, "pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(&tt.cp)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "forkcp: encode: "), err.Error())
		})
	}
}

// sample is a stream whose field offsets the decode tests know.
func sample(t *testing.T) []byte {
	t.Helper()
	b, err := Encode(&Checkpoint{
		Header: Header{Pid: 1, Ppid: 2, Cwd: "/w", Umask: 0o22, SigMask: 5, Argv: []string{"a"}, Env: []string{"E=1"}},
		Entries: []Entry{
			{Number: 3, Flags: FlagCloexec, Kind: KindFile, Description: "f"},
			{Number: 7, Kind: KindPipe, Description: "p"},
		},
		Payload: []byte("xy"),
	})
	require.NoError(t, err)
	require.Len(t, b, 106, "the offsets below assume this layout")
	return b
}

// Offsets of the sample's fields.
const (
	offVersion    = 4
	offFlags      = 6
	offBodyLen    = 8
	offUmask      = 24
	offCwdLen     = 36
	offCwd        = 40
	offArgvCount  = 42
	offArgv0Len   = 46
	offEnvCount   = 51
	offHandles    = 62
	offE0Number   = 66
	offE0Flags    = 70
	offE0Kind     = 74
	offE0Reserved = 75
	offE0DescLen  = 76
	offE1Number   = 79
	offPayloadLen = 92
	offPayload    = 100
	offChecksum   = 102
)

func TestDecodeErrors(t *testing.T) {
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint32(b[off:], v); return reseal(b) }
	}
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint64(b[off:], v); return reseal(b) }
	}
	setByte := func(off int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[off] = v; return reseal(b) }
	}
	tests := []struct {
		name   string
		edit   func([]byte) []byte
		lim    *Limits
		class  error
		field  string
		offset int64
	}{
		{"empty", func([]byte) []byte { return nil }, nil, ErrTruncated, "preamble", 0},
		{"short preamble", func(b []byte) []byte { return b[:15] }, nil, ErrTruncated, "preamble", 15},
		{"magic", func(b []byte) []byte { b[0] = 'G'; return b }, nil, ErrMagic, "magic", 0},
		{"version 2", func(b []byte) []byte { b[offVersion] = 2; return b }, nil, ErrVersion, "version", 4},
		{"version 0", func(b []byte) []byte { b[offVersion] = 0; return b }, nil, ErrVersion, "version", 4},
		{"unknown stream flag", setByte(offFlags, 0x7), nil, ErrCorrupt, "stream flags", 6},
		{"body length above limit", put64(offBodyLen, 1<<40), nil, ErrTooLarge, "body length", 8},
		{"body length wraps", put64(offBodyLen, ^uint64(0)), nil, ErrTooLarge, "body length", 8},
		{"body shorter than any stream", put64(offBodyLen, 10), nil, ErrCorrupt, "body length", 8},
		{"cut by one byte", func(b []byte) []byte { return b[:len(b)-1] }, nil, ErrTruncated, "stream", 105},
		{"cut in the table", func(b []byte) []byte { return b[:70] }, nil, ErrTruncated, "stream", 70},
		{"trailing byte", func(b []byte) []byte { return append(b, 0) }, nil, ErrCorrupt, "stream", 106},
		{"stream over MaxStreamBytes", func(b []byte) []byte { return b }, &Limits{MaxStreamBytes: 100}, ErrTooLarge, "body length", 8},
		{"checksum", func(b []byte) []byte { b[offChecksum] ^= 1; return b }, nil, ErrChecksum, "checksum", offChecksum},
		{"flipped payload bit", func(b []byte) []byte { b[offPayload] ^= 0x10; return b }, nil, ErrChecksum, "checksum", offChecksum},
		{"umask above 0777", put32(offUmask, 0o1000), nil, ErrCorrupt, "umask", offUmask},
		{"cwd above limit", put32(offCwdLen, 1<<30), nil, ErrTooLarge, "cwd", offCwdLen},
		{"cwd past the end", put32(offCwdLen, 1000), nil, ErrCorrupt, "cwd", offCwd},
		{"NUL in cwd", setByte(offCwd+1, 0), nil, ErrCorrupt, "cwd", offCwdLen},
		{"argv count above limit", put32(offArgvCount, 2), &Limits{MaxStrings: 1}, ErrTooLarge, "argv count", offArgvCount},
		{"argv count cannot fit", put32(offArgvCount, 60000), nil, ErrCorrupt, "argv count", offArgvCount},
		{"argv string past the end", put32(offArgv0Len, 1<<16), nil, ErrCorrupt, "argv[0]", offArgv0Len + 4},
		{"env count cannot fit", put32(offEnvCount, 100), nil, ErrCorrupt, "env count", offEnvCount},
		{"handle count above limit", func(b []byte) []byte { return b }, &Limits{MaxHandles: 1}, ErrTooLarge, "handle count", offHandles},
		{"handle count cannot fit", put32(offHandles, 1000), nil, ErrCorrupt, "handle count", offHandles},
		{"number above MaxNumber", put32(offE0Number, MaxNumber+1), nil, ErrCorrupt, "handle 0 number", offE0Number},
		{"numbers not increasing", put32(offE1Number, 3), nil, ErrCorrupt, "handle 1 number", offE1Number},
		{"numbers decreasing", put32(offE1Number, 1), nil, ErrCorrupt, "handle 1 number", offE1Number},
		{"unknown handle flags", put32(offE0Flags, 3), nil, ErrCorrupt, "handle 0 flags", offE0Flags},
		{"kind 0", setByte(offE0Kind, 0), nil, ErrCorrupt, "handle 0 kind", offE0Kind},
		{"kind 6", setByte(offE0Kind, 6), nil, ErrCorrupt, "handle 0 kind", offE0Kind},
		{"reserved byte", setByte(offE0Reserved, 1), nil, ErrCorrupt, "handle 0 reserved byte", offE0Reserved},
		{"payload above a small limit", func(b []byte) []byte { return b }, &Limits{MaxPayload: 1}, ErrTooLarge, "payload", offPayloadLen},
		{"cwd above a small limit", func(b []byte) []byte { return b }, &Limits{MaxStringBytes: 1}, ErrTooLarge, "cwd", offCwdLen},
		{"description past the end", func(b []byte) []byte { le.PutUint16(b[offE0DescLen:], 4000); return reseal(b) }, nil, ErrCorrupt, "handle 0 description", offE0DescLen + 2},
		{"payload above limit", put64(offPayloadLen, 1<<40), nil, ErrTooLarge, "payload", offPayloadLen},
		{"payload past the end", put64(offPayloadLen, 3), nil, ErrCorrupt, "payload", offPayload},
		{"bytes left before the checksum", put64(offPayloadLen, 1), nil, ErrCorrupt, "payload", offPayload + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.edit(sample(t))
			cp, err := Decode(b, tt.lim)
			require.Error(t, err)
			assert.Nil(t, cp)
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			assert.ErrorIs(t, err, tt.class)
			assert.Equal(t, tt.field, fe.Field)
			assert.Equal(t, tt.offset, fe.Offset)
			assert.True(t, strings.HasPrefix(err.Error(), "forkcp: checkpoint stream: "+tt.field), err.Error())
			// Every other class must not match.
			for _, other := range []error{ErrMagic, ErrVersion, ErrTruncated, ErrTooLarge, ErrChecksum, ErrCorrupt} {
				if other != tt.class {
					assert.False(t, errors.Is(err, other), "also %v", other)
				}
			}
		})
	}
}

func TestDecodeDescriptionLimit(t *testing.T) {
	b, err := Encode(&Checkpoint{Entries: []Entry{{Number: 1, Kind: KindFile, Description: "abcdef"}}})
	require.NoError(t, err)
	_, err = Decode(b, &Limits{MaxDescription: 5})
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "handle 0 description")
	_, err = Decode(b, &Limits{MaxDescription: 6})
	assert.NoError(t, err)
}

func TestReadStreamErrors(t *testing.T) {
	b := sample(t)
	_, err := ReadStream(bytes.NewReader(nil), nil)
	assert.Equal(t, err.Error(), "EOF", "nothing at all is a clean end")
	_, err = ReadStream(bytes.NewReader(b[:9]), nil)
	assert.ErrorIs(t, err, ErrTruncated)
	_, err = ReadStream(bytes.NewReader(b[:50]), nil)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Contains(t, err.Error(), "106 bytes declared, 50 present")
	// The preamble is checked before the body is allocated.
	huge := bytes.Clone(b[:preambleSize])
	le.PutUint64(huge[offBodyLen:], 1<<50)
	_, err = ReadStream(bytes.NewReader(huge), nil)
	assert.ErrorIs(t, err, ErrTooLarge)
	bad := bytes.Clone(b)
	bad[offVersion] = 9
	_, err = ReadStream(bytes.NewReader(bad), nil)
	assert.ErrorIs(t, err, ErrVersion)
	assert.Contains(t, err.Error(), "version 9; this build reads version 1")
}

func TestLimitsDefaults(t *testing.T) {
	assert.Equal(t, DefaultLimits, (*Limits)(nil).withDefaults())
	assert.Equal(t, DefaultLimits, (&Limits{}).withDefaults())
	l := (&Limits{MaxHandles: 7, MaxDescription: 1 << 20}).withDefaults()
	assert.Equal(t, 7, l.MaxHandles)
	assert.Equal(t, MaxDescription, l.MaxDescription, "the format's ceiling")
}
