package forkcp

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Decode parses one complete version 1 stream. It is strict: b must be
// exactly one stream, with a valid checksum, every field in range and no
// byte left over. Every length and count is checked against lim (nil: the
// DefaultLimits) and against the bytes actually present before anything is
// allocated for it. Errors are *FormatError values.
func Decode(b []byte, lim *Limits) (*Checkpoint, error) {
	l := lim.withDefaults()
	flags, bodyLen, err := checkPreamble(b, &l)
	if err != nil {
		return nil, err
	}
	total := int64(preambleSize) + bodyLen
	switch {
	case int64(len(b)) < total:
		return nil, &FormatError{Offset: int64(len(b)), Field: "stream", Err: ErrTruncated,
			Detail: fmt.Sprintf("%d bytes declared, %d present", total, len(b))}
	case int64(len(b)) > total:
		return nil, &FormatError{Offset: total, Field: "stream", Err: ErrCorrupt,
			Detail: fmt.Sprintf("%d bytes after the end of the stream", int64(len(b))-total)}
	}
	end := len(b) - checksumSize
	if got, want := crc32.Checksum(b[:end], castagnoli), le.Uint32(b[end:]); got != want {
		return nil, &FormatError{Offset: int64(end), Field: "checksum", Err: ErrChecksum,
			Detail: fmt.Sprintf("stored %#08x, computed %#08x", want, got)}
	}
	d := decoder{b: b[:end], off: preambleSize, lim: &l}
	cp := d.checkpoint(flags)
	if d.err != nil {
		return nil, d.err
	}
	if d.off != end {
		return nil, &FormatError{Offset: int64(d.off), Field: "payload", Err: ErrCorrupt,
			Detail: fmt.Sprintf("%d unparsed bytes before the checksum", end-d.off)}
	}
	return cp, nil
}

// ReadStream reads one stream from r and returns its bytes, checking the
// preamble against lim before allocating the body. A reader that ends
// before the first byte returns io.EOF; one that ends inside the stream
// returns a *FormatError wrapping ErrTruncated.
func ReadStream(r io.Reader, lim *Limits) ([]byte, error) {
	l := lim.withDefaults()
	pre := make([]byte, preambleSize)
	if n, err := io.ReadFull(r, pre); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &FormatError{Offset: int64(n), Field: "preamble", Err: ErrTruncated,
				Detail: fmt.Sprintf("%d of %d bytes", n, preambleSize)}
		}
		return nil, fmt.Errorf("forkcp: read stream: %w", err)
	}
	_, bodyLen, err := checkPreamble(pre, &l)
	if err != nil {
		return nil, err
	}
	b := make([]byte, preambleSize+bodyLen)
	copy(b, pre)
	if n, err := io.ReadFull(r, b[preambleSize:]); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &FormatError{Offset: int64(preambleSize + n), Field: "stream", Err: ErrTruncated,
				Detail: fmt.Sprintf("%d bytes declared, %d present", len(b), preambleSize+n)}
		}
		return nil, fmt.Errorf("forkcp: read stream: %w", err)
	}
	return b, nil
}

// checkPreamble validates the first preambleSize bytes of a stream and
// returns its flags and body length.
func checkPreamble(b []byte, l *Limits) (flags uint16, bodyLen int64, err error) {
	if len(b) < preambleSize {
		return 0, 0, &FormatError{Offset: int64(len(b)), Field: "preamble", Err: ErrTruncated,
			Detail: fmt.Sprintf("%d of %d bytes", len(b), preambleSize)}
	}
	if !bytes.Equal(b[:4], []byte(Magic)) {
		return 0, 0, &FormatError{Offset: 0, Field: "magic", Err: ErrMagic, Detail: fmt.Sprintf("%q", b[:4])}
	}
	if v := le.Uint16(b[4:]); v != Version {
		return 0, 0, &FormatError{Offset: 4, Field: "version", Err: ErrVersion,
			Detail: fmt.Sprintf("version %d; this build reads version %d", v, Version)}
	}
	flags = le.Uint16(b[6:])
	if flags&^streamFlags != 0 {
		return 0, 0, &FormatError{Offset: 6, Field: "stream flags", Err: ErrCorrupt,
			Detail: fmt.Sprintf("unknown bits %#04x", flags&^streamFlags)}
	}
	n := le.Uint64(b[8:])
	if n > uint64(l.MaxStreamBytes-preambleSize) {
		return 0, 0, &FormatError{Offset: 8, Field: "body length", Err: ErrTooLarge,
			Detail: fmt.Sprintf("stream of %d bytes, limit %d", n+preambleSize, l.MaxStreamBytes)}
	}
	if int64(n) < minBody(flags) {
		return 0, 0, &FormatError{Offset: 8, Field: "body length", Err: ErrCorrupt,
			Detail: fmt.Sprintf("%d bytes, at least %d needed", n, minBody(flags))}
	}
	return flags, int64(n), nil
}

// decoder reads fields from a stream whose checksum has been verified; b
// ends before the checksum. The first error sticks.
type decoder struct {
	b   []byte
	off int
	lim *Limits
	err error
}

func (d *decoder) fail(field string, class error, format string, args ...any) {
	if d.err == nil {
		d.err = &FormatError{Offset: int64(d.off), Field: field, Err: class, Detail: fmt.Sprintf(format, args...)}
	}
}

// take returns the next n bytes, or fails when fewer are left.
func (d *decoder) take(field string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if left := uint64(len(d.b) - d.off); n > left {
		d.fail(field, ErrCorrupt, "%d bytes declared, %d left", n, left)
		return nil
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p
}

func (d *decoder) u8(field string) uint8 {
	if p := d.take(field, 1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if p := d.take(field, 2); p != nil {
		return le.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if p := d.take(field, 4); p != nil {
		return le.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if p := d.take(field, 8); p != nil {
		return le.Uint64(p)
	}
	return 0
}

// str reads a length-prefixed string without NUL bytes.
func (d *decoder) str(field string) string {
	at := d.off
	n := d.u32(field)
	if d.err == nil && n > uint32(d.lim.MaxStringBytes) {
		d.off = at
		d.fail(field, ErrTooLarge, "%d bytes, limit %d", n, d.lim.MaxStringBytes)
		return ""
	}
	p := d.take(field, uint64(n))
	if d.err != nil {
		return ""
	}
	if i := bytes.IndexByte(p, 0); i >= 0 {
		d.off = at
		d.fail(field, ErrCorrupt, "NUL byte at index %d", i)
		return ""
	}
	return string(p)
}

// strs reads a counted list of strings.
func (d *decoder) strs(field string) []string {
	at := d.off
	n := d.u32(field + " count")
	if d.err != nil {
		return nil
	}
	if n > uint32(d.lim.MaxStrings) {
		d.off = at
		d.fail(field+" count", ErrTooLarge, "%d strings, limit %d", n, d.lim.MaxStrings)
		return nil
	}
	if uint64(n)*4 > uint64(len(d.b)-d.off) {
		d.off = at
		d.fail(field+" count", ErrCorrupt, "%d strings cannot fit in %d bytes", n, len(d.b)-d.off)
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		if ss[i] = d.str(field); d.err != nil {
			d.err.(*FormatError).Field = fmt.Sprintf("%s[%d]", field, i)
			return nil
		}
	}
	return ss
}

func (d *decoder) checkpoint(flags uint16) *Checkpoint {
	cp := &Checkpoint{}
	h := &cp.Header
	h.Pid = int(d.u32("pid"))
	h.Ppid = int(d.u32("ppid"))
	at := d.off
	if h.Umask = d.u32("umask"); h.Umask > maxUmask {
		d.off = at
		d.fail("umask", ErrCorrupt, "%#o above 0777", h.Umask)
	}
	h.SigMask = d.u64("signal mask")
	h.Cwd = d.str("cwd")
	if flags&streamArgv != 0 {
		h.Argv = d.strs("argv")
	}
	if flags&streamEnv != 0 {
		h.Env = d.strs("env")
	}
	cp.Entries = d.entries()
	cp.Payload = d.payload()
	if d.err != nil {
		return nil
	}
	return cp
}

func (d *decoder) entries() []Entry {
	at := d.off
	n := d.u32("handle count")
	if d.err != nil {
		return nil
	}
	if n > uint32(d.lim.MaxHandles) {
		d.off = at
		d.fail("handle count", ErrTooLarge, "%d handles, limit %d", n, d.lim.MaxHandles)
		return nil
	}
	if uint64(n)*entryFixed > uint64(len(d.b)-d.off) {
		d.off = at
		d.fail("handle count", ErrCorrupt, "%d handles cannot fit in %d bytes", n, len(d.b)-d.off)
		return nil
	}
	es := make([]Entry, n)
	prev := -1
	for i := range es {
		d.entry(&es[i], prev)
		if d.err != nil {
			d.err.(*FormatError).Field = fmt.Sprintf("handle %d %s", i, d.err.(*FormatError).Field)
			return nil
		}
		prev = es[i].Number
	}
	return es
}

// entry reads one table row; prev is the previous row's number.
func (d *decoder) entry(e *Entry, prev int) {
	at := d.off
	num := d.u32("number")
	if d.err == nil && (num > MaxNumber || int(num) <= prev) {
		d.off = at
		d.fail("number", ErrCorrupt, "%d after %d: numbers must increase, at most %d", num, prev, MaxNumber)
	}
	e.Number = int(num)
	at = d.off
	if e.Flags = Flags(d.u32("flags")); d.err == nil && e.Flags&^knownFlags != 0 {
		d.off = at
		d.fail("flags", ErrCorrupt, "unknown bits %#x", uint32(e.Flags&^knownFlags))
	}
	at = d.off
	if e.Kind = Kind(d.u8("kind")); d.err == nil && !e.Kind.valid() {
		d.off = at
		d.fail("kind", ErrCorrupt, "kind %d", uint8(e.Kind))
	}
	at = d.off
	if r := d.u8("reserved byte"); r != 0 {
		d.off = at
		d.fail("reserved byte", ErrCorrupt, "%#02x, must be 0", r)
	}
	at = d.off
	dl := d.u16("description length")
	if d.err == nil && int(dl) > d.lim.MaxDescription {
		d.off = at
		d.fail("description", ErrTooLarge, "%d bytes, limit %d", dl, d.lim.MaxDescription)
	}
	if p := d.take("description", uint64(dl)); len(p) > 0 {
		e.Description = string(p)
	}
}

func (d *decoder) payload() []byte {
	at := d.off
	n := d.u64("payload length")
	if d.err == nil && n > uint64(d.lim.MaxPayload) {
		d.off = at
		d.fail("payload", ErrTooLarge, "%d bytes, limit %d", n, d.lim.MaxPayload)
	}
	p := d.take("payload", n)
	if d.err != nil || n == 0 {
		return nil
	}
	return bytes.Clone(p)
}
