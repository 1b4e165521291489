package forkcp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzLimits are small, so that the fuzzer reaches every limit check.
var fuzzLimits = Limits{
	MaxStreamBytes: 1 << 20,
	MaxHandles:     64,
	MaxPayload:     4096,
	MaxStrings:     16,
	MaxStringBytes: 256,
	MaxDescription: 64,
}

// fuzzSeeds are the valid checkpoints the corpus starts from.
func fuzzSeeds() map[string]Checkpoint {
	return map[string]Checkpoint{
		"empty":    {},
		"header":   {Header: Header{Pid: 10, Ppid: 1, Cwd: "/srv", Umask: 0o22, SigMask: 1 << 13, Argv: []string{"srv", "-x"}, Env: []string{"A=1"}}},
		"handles":  {Entries: []Entry{{Number: 0, Kind: KindFile, Description: "stdin"}, {Number: 3, Flags: FlagCloexec, Kind: KindSocket, Description: "127.0.0.1:80"}, {Number: 9, Kind: KindPipe}}},
		"payload":  {Payload: []byte("in-flight state")},
		"all":      {Header: Header{Pid: 2, Cwd: "/", Argv: []string{}}, Entries: manyEntries(20), Payload: []byte{0, 1, 2}},
		"at-limit": {Entries: manyEntries(64), Payload: make([]byte, 4096)},
	}
}

// reframe sets a stream's body length to what is there and recomputes the
// checksum, so mutated inputs get past the framing to the fields.
func reframe(b []byte) []byte {
	if len(b) < preambleSize+checksumSize {
		return b
	}
	b = bytes.Clone(b)
	le.PutUint64(b[offBodyLen:], uint64(len(b)-preambleSize))
	return reseal(b)
}

func FuzzDecode(f *testing.F) {
	for _, cp := range fuzzSeeds() {
		b, err := Encode(&cp)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, b := range [][]byte{data, reseal(data), reframe(data)} {
			cp, err := Decode(b, &fuzzLimits)
			rd, rerr := ReadStream(bytes.NewReader(b), &fuzzLimits)
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("error is not a *FormatError: %v", err)
				}
				if cp != nil {
					t.Fatal("a checkpoint returned with an error")
				}
				continue
			}
			// A stream Decode accepts is canonical: it encodes back to the
			// same bytes. ReadStream reads exactly it.
			again, err := Encode(cp)
			if err != nil {
				t.Fatalf("a decoded checkpoint does not encode: %v", err)
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
			}
			if rerr != nil || !bytes.Equal(rd, b) {
				t.Fatalf("ReadStream: %v", rerr)
			}
		}
	})
}

// FuzzReceive feeds arbitrary bytes with some descriptors to Receive: it
// must fail cleanly or succeed, and in both cases no descriptor may stay
// open that is not in the returned map.
func FuzzReceive(f *testing.F) {
	for _, cp := range fuzzSeeds() {
		b, err := Encode(&cp)
		require.NoError(f, err)
		f.Add(b, uint8(len(cp.Entries)))
	}
	f.Fuzz(func(t *testing.T, data []byte, nfds uint8) {
		if len(data) == 0 || int(nfds) > len(data) {
			return // descriptors ride on data bytes
		}
		base, err := fdTable()
		require.NoError(t, err)
		fds := make([]int, nfds)
		for i := range fds {
			h, err := newPipeHandle(0)
			require.NoError(t, err)
			fds[i] = h.FD()
		}
		a, b := socketPair(t)
		sent := rawSend(a, reframe(data), fds)
		r, err := Receive(b, &fuzzLimits)
		b.Close()
		<-sent
		for _, fd := range fds {
			os.NewFile(uintptr(fd), "").Close()
		}
		if err == nil {
			require.NoError(t, r.Map.CloseAll())
		} else if err != io.EOF {
			var te *TransportError
			require.ErrorAs(t, err, &te)
		}
		assertFDs(t, base)
	})
}

// TestWriteFuzzCorpus regenerates the committed seed corpus under
// testdata/fuzz when FORKCP_WRITE_CORPUS=1: the valid seeds, plus
// near-misses of each error class.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("FORKCP_WRITE_CORPUS") != "1" {
		t.Skip("set FORKCP_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(fuzz, name string, values ...any) {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		text := "go test fuzz v1\n"
		for _, v := range values {
			switch v := v.(type) {
			case []byte:
				text += "[]byte(" + strconv.Quote(string(v)) + ")\n"
			case uint8:
				text += fmt.Sprintf("byte(%d)\n", v)
			}
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	s := sample(t)
	edits := map[string]func([]byte) []byte{
		"truncated":       func(b []byte) []byte { return b[:len(b)-7] },
		"bad-magic":       func(b []byte) []byte { b[1] = 'X'; return b },
		"version-2":       func(b []byte) []byte { b[offVersion] = 2; return b },
		"bad-checksum":    func(b []byte) []byte { b[offChecksum+2] ^= 0x40; return b },
		"huge-length":     func(b []byte) []byte { le.PutUint64(b[offBodyLen:], 1<<62); return b },
		"huge-handles":    func(b []byte) []byte { le.PutUint32(b[offHandles:], 1<<31); return reseal(b) },
		"huge-argv":       func(b []byte) []byte { le.PutUint32(b[offArgvCount:], 1<<30); return reseal(b) },
		"huge-cwd":        func(b []byte) []byte { le.PutUint32(b[offCwdLen:], 1<<31); return reseal(b) },
		"huge-payload":    func(b []byte) []byte { le.PutUint64(b[offPayloadLen:], 1<<63); return reseal(b) },
		"numbers-repeat":  func(b []byte) []byte { le.PutUint32(b[offE1Number:], 3); return reseal(b) },
		"kind-zero":       func(b []byte) []byte { b[offE0Kind] = 0; return reseal(b) },
		"reserved-set":    func(b []byte) []byte { b[offE0Reserved] = 1; return reseal(b) },
		"unknown-flags":   func(b []byte) []byte { b[offFlags] = 4; return b },
		"nul-in-cwd":      func(b []byte) []byte { b[offCwd] = 0; return reseal(b) },
		"trailing-bytes":  func(b []byte) []byte { return append(b, 1, 2, 3) },
		"umask-too-large": func(b []byte) []byte { le.PutUint32(b[offUmask:], 0o7777); return reseal(b) },
	}
	for name, edit := range edits {
		b := edit(bytes.Clone(s))
		write("FuzzDecode", name, b)
		write("FuzzReceive", name, b, uint8(2))
	}
	for name, cp := range fuzzSeeds() {
		b, err := Encode(&cp)
		require.NoError(t, err)
		write("FuzzDecode", "valid-"+name, b)
		write("FuzzReceive", "valid-"+name, b, uint8(len(cp.Entries)))
	}
	write("FuzzReceive", "descriptors-without-entries", s, uint8(5))
}
