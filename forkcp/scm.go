package forkcp

import (
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// maxFDsPerMessage is the kernel's SCM_MAX_FD: the most descriptors
	// one sendmsg may carry.
	maxFDsPerMessage = 253
	// maxChunk bounds the data of one sendmsg or recvmsg.
	maxChunk = 1 << 20
)

// oobSize holds one full batch of descriptors, plus credentials in case
// the socket has SO_PASSCRED set.
var oobSize = unix.CmsgSpace(maxFDsPerMessage*4) + unix.CmsgSpace(unix.SizeofUcred)

// sendStream writes stream to a stream socket and passes fds with it, in
// order, in batches of at most maxFDsPerMessage. Batch i rides on the
// first byte of the i-th of len(batches) equal slices of the stream, so
// every descriptor travels attached to bytes of its own stream and a
// receiver reading exactly the stream's length gets exactly its
// descriptors.
func sendStream(rc syscall.RawConn, stream []byte, fds []int) error {
	batches := (len(fds) + maxFDsPerMessage - 1) / maxFDsPerMessage
	pieces := max(batches, 1)
	if len(stream) < pieces {
		return fmt.Errorf("%d descriptors cannot ride on a %d-byte stream", len(fds), len(stream))
	}
	for i := range pieces {
		lo, hi := i*len(stream)/pieces, (i+1)*len(stream)/pieces
		var oob []byte
		if i < batches {
			oob = unix.UnixRights(fds[i*maxFDsPerMessage : min((i+1)*maxFDsPerMessage, len(fds))]...)
		}
		for lo < hi {
			n, err := sendmsg(rc, stream[lo:min(hi, lo+maxChunk)], oob)
			if err != nil {
				return err
			}
			oob = nil // the descriptors went with the first byte sent
			lo += n
		}
	}
	return nil
}

func sendmsg(rc syscall.RawConn, p, oob []byte) (int, error) {
	var n int
	var serr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, serr = unix.SendmsgN(int(fd), p, oob, nil, unix.MSG_NOSIGNAL)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("sendmsg: %w", err)
	}
	return n, nil
}

// receiver reads a stream from a socket and collects the descriptors that
// arrive with it. Whoever fails a receive must call closeAll.
type receiver struct {
	rc     syscall.RawConn
	oob    []byte
	fds    []int
	maxFDs int
	total  int64 // stream bytes read so far
}

// readFull fills p. It returns io.EOF if the peer closed before the
// stream's first byte and io.ErrUnexpectedEOF if it closed inside it.
func (r *receiver) readFull(p []byte) error {
	for len(p) > 0 {
		n, err := r.recv(p[:min(len(p), maxChunk)])
		if err != nil {
			return err
		}
		if n == 0 {
			if r.total == 0 {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		p = p[n:]
		r.total += int64(n)
	}
	return nil
}

// recv makes one recvmsg with MSG_CMSG_CLOEXEC, so no received descriptor
// can leak into a program this process executes.
func (r *receiver) recv(p []byte) (int, error) {
	var n, oobn, flags int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), p, r.oob, unix.MSG_CMSG_CLOEXEC)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, fmt.Errorf("recvmsg: %w", err)
	}
	// Collect first: whatever arrived is closed if anything below fails.
	if oobn > 0 {
		if err := r.collect(r.oob[:oobn]); err != nil {
			return 0, err
		}
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return 0, ErrControlTruncated
	}
	if len(r.fds) > r.maxFDs {
		return 0, &FormatError{Offset: r.total, Field: "descriptors", Err: ErrTooLarge,
			Detail: fmt.Sprintf("more than %d arrived", r.maxFDs)}
	}
	return n, nil
}

// collect appends the descriptors of every SCM_RIGHTS message in oob.
// Other control messages (credentials) are ignored.
func (r *receiver) collect(oob []byte) error {
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return fmt.Errorf("malformed control message: %w", err)
		}
		oob = rest
		if hdr.Level != unix.SOL_SOCKET || hdr.Type != unix.SCM_RIGHTS {
			continue
		}
		fds, err := unix.ParseUnixRights(&unix.SocketControlMessage{Header: hdr, Data: data})
		if err != nil {
			return fmt.Errorf("malformed SCM_RIGHTS message: %w", err)
		}
		r.fds = append(r.fds, fds...)
	}
	return nil
}

// closeAll closes every descriptor received so far.
func (r *receiver) closeAll() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}
