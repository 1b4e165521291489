package forkcp

import (
	"errors"
	"fmt"
	"io"
	"syscall"
)

// Restored is a checkpoint brought back to life: the writer's header, the
// application payload, and a map holding the received descriptors at the
// numbers they had in the writer.
type Restored struct {
	Header  Header
	Payload []byte
	Map     *HandleMap
}

// Send writes the stream of s, with hdr (nil: empty) and payload, to the
// AF_UNIX stream socket c (a *net.UnixConn, or an *os.File on a socket)
// and passes every entry's descriptor with SCM_RIGHTS, at most 253 per
// message.
//
// Every descriptor is open and is the entry's file for the whole call,
// whatever happens to the map meanwhile: the snapshot holds a reference on
// each. Once Send returns, the descriptors are in the socket (the kernel
// holds its own references) and s may be released.
func Send(c syscall.Conn, s *Snapshot, hdr *Header, payload []byte) error {
	stream, err := EncodeSnapshot(s, hdr, payload)
	if err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return &TransportError{Op: "send", Err: err}
	}
	if err := sendStream(rc, stream, s.fds()); err != nil {
		return &TransportError{Op: "send", Err: err}
	}
	return nil
}

// Receive reads one checkpoint from the AF_UNIX stream socket c, with its
// descriptors, and returns it with a new map holding them. Received
// descriptors are close-on-exec at the OS level (MSG_CMSG_CLOEXEC) and
// have numbers of the kernel's choosing; the map puts them at the
// writer's numbers, and Entry flags are kept as recorded.
//
// It reads exactly one stream, so several checkpoints can follow each
// other on one connection; concurrent Receives on one connection must be
// serialized. A peer that closes before a stream begins
// gives io.EOF. Any other failure (a truncated, corrupt, oversized or
// wrong-version stream, truncated control data, a descriptor count that
// does not match the table) closes every descriptor received so far and
// returns no map at all.
func Receive(c syscall.Conn, lim *Limits) (*Restored, error) {
	return receive(c, lim, oobSize)
}

func receive(c syscall.Conn, lim *Limits, oobLen int) (_ *Restored, err error) {
	l := lim.withDefaults()
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, &TransportError{Op: "receive", Err: err}
	}
	r := &receiver{rc: rc, oob: make([]byte, oobLen), maxFDs: l.MaxHandles}
	defer func() {
		if err != nil {
			r.closeAll()
		}
	}()
	pre := make([]byte, preambleSize)
	if err := r.readFull(pre); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, &TransportError{Op: "receive", Err: truncated(err, r.total, preambleSize)}
	}
	_, bodyLen, err := checkPreamble(pre, &l)
	if err != nil {
		return nil, &TransportError{Op: "receive", Err: err}
	}
	buf := make([]byte, preambleSize+bodyLen)
	copy(buf, pre)
	if err := r.readFull(buf[preambleSize:]); err != nil {
		return nil, &TransportError{Op: "receive", Err: truncated(err, r.total, int64(len(buf)))}
	}
	cp, err := Decode(buf, &l)
	if err != nil {
		return nil, &TransportError{Op: "receive", Err: err}
	}
	if len(cp.Entries) != len(r.fds) {
		return nil, &TransportError{Op: "receive", Err: fmt.Errorf(
			"the handle table lists %d descriptors, %d arrived", len(cp.Entries), len(r.fds))}
	}
	m := &HandleMap{}
	for i, e := range cp.Entries {
		h := newHandle(r.fds[i], e.Kind, e.Flags, e.Description)
		h.osCloexec = true // MSG_CMSG_CLOEXEC
		m.set(e.Number, h)
	}
	return &Restored{Header: cp.Header, Payload: cp.Payload, Map: m}, nil
}

// truncated turns an end of connection inside a stream into a
// *FormatError wrapping ErrTruncated.
func truncated(err error, got, want int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{Offset: got, Field: "stream", Err: ErrTruncated,
			Detail: fmt.Sprintf("connection closed after %d of %d bytes", got, want)}
	}
	return err
}
