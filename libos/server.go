package libos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/forkless/forkless/internal/trace"
	"golang.org/x/sys/unix"
)

// The host protocol (docs/design.md, "Host protocol"): SOCK_SEQPACKET,
// one message per packet. A message starting with '{' is one trace line
// (a trailing newline is allowed); any other message starts with a
// 16-byte header in native (little-endian) byte order:
//
//	magic uint32 (ProtoMagic: "FLH1", the 1 is the version)
//	type  uint16
//	flags uint16 (0)
//	pid   int32
//	arg   int32
//
// followed by the payload of the type.
const (
	ProtoMagic  = 0x31484c46 // 'F' 'L' 'H' '1'
	ProtoHeader = 16

	MsgAdmit       = 1    // request: pid creates a process; reply MsgAdmitReply
	MsgSettle      = 2    // pid's creation is over (succeeded or failed); no reply
	MsgAdopt       = 3    // request: adopt pid (the sender) onto the ptrace platform; reply MsgAdoptReply
	MsgAdmitReply  = 0x81 // arg 1: admitted, 0: refused (EAGAIN)
	MsgAdoptReply  = 0x83 // arg 1: adopted, payload = seccomp filter; 0: refused
	maxPacket      = 1 << 17
	maxFilterBytes = maxPacket - ProtoHeader
)

type header struct {
	Magic uint32
	Type  uint16
	Flags uint16
	PID   int32
	Arg   int32
}

func (m header) bytes(payload []byte) []byte {
	b := make([]byte, ProtoHeader, ProtoHeader+len(payload))
	binary.LittleEndian.PutUint32(b[0:], m.Magic)
	binary.LittleEndian.PutUint16(b[4:], m.Type)
	binary.LittleEndian.PutUint16(b[6:], m.Flags)
	binary.LittleEndian.PutUint32(b[8:], uint32(m.PID))
	binary.LittleEndian.PutUint32(b[12:], uint32(m.Arg))
	return append(b, payload...)
}

func parseHeader(b []byte) (header, bool) {
	if len(b) < ProtoHeader {
		return header{}, false
	}
	m := header{
		Magic: binary.LittleEndian.Uint32(b[0:]),
		Type:  binary.LittleEndian.Uint16(b[4:]),
		Flags: binary.LittleEndian.Uint16(b[6:]),
		PID:   int32(binary.LittleEndian.Uint32(b[8:])),
		Arg:   int32(binary.LittleEndian.Uint32(b[12:])),
	}
	return m, m.Magic == ProtoMagic
}

type server struct {
	h  *Host
	ln *net.UnixListener
	wg sync.WaitGroup

	mu     sync.Mutex
	conns  map[*net.UnixConn]bool
	closed bool
}

func newServer(h *Host, path string) (*server, error) {
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	s := &server{h: h, ln: ln, conns: map[*net.UnixConn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			// Accepted while close was draining: its lines count too,
			// read within the same bound.
			c.SetReadDeadline(time.Now().Add(drainRead))
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func peerPID(c *net.UnixConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// serve handles one client until it closes; its outstanding reservations
// are then released.
func (s *server) serve(c *net.UnixConn) {
	defer s.wg.Done()
	peer := peerPID(c)
	held := map[int]int{} // pid -> reservations made on this connection
	defer func() {
		for pid, n := range held {
			for range n {
				s.h.Settle(pid)
			}
		}
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	buf := make([]byte, maxPacket)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if n == 0 {
			continue
		}
		if reply := s.handle(buf[:n], peer, held); reply != nil {
			c.Write(reply)
		}
	}
}

// handle acts on one message from the client peer and returns the reply
// to send, if any. held counts the reservations made on this connection.
// Any bytes are safe here: a message that is not a valid line or request
// is counted as bad and dropped.
func (s *server) handle(msg []byte, peer int, held map[int]int) []byte {
	if msg[0] == '{' {
		ev, err := trace.ParseLine(bytes.TrimSuffix(msg, []byte{'\n'}))
		if err != nil {
			s.h.bad.Add(1)
			return nil
		}
		s.h.Record(ev)
		return nil
	}
	m, ok := parseHeader(msg)
	if !ok || m.PID <= 0 {
		s.h.bad.Add(1)
		return nil
	}
	pid := int(m.PID)
	switch m.Type {
	case MsgAdmit:
		arg := int32(0)
		if s.h.Admit(pid) {
			held[pid]++
			arg = 1
		}
		return header{Magic: ProtoMagic, Type: MsgAdmitReply, PID: m.PID, Arg: arg}.bytes(nil)
	case MsgSettle:
		if held[pid] > 0 {
			held[pid]--
			s.h.Settle(pid)
		}
		return nil
	case MsgAdopt:
		var filter []byte
		arg := int32(0)
		if a := s.h.getAdopter(); a != nil && pid == peer {
			if err := a.Adopt(pid); err == nil {
				filter = a.Filter()
				if len(filter)%8 == 0 && len(filter) <= maxFilterBytes {
					arg = 1
				} else {
					filter = nil
				}
			}
		}
		return header{Magic: ProtoMagic, Type: MsgAdoptReply, PID: m.PID, Arg: arg}.bytes(filter)
	}
	s.h.bad.Add(1)
	return nil
}

// drainRead bounds how long close reads what a connection still holds;
// its peer is normally gone by then (EOF comes at once).
const drainRead = 2 * time.Second

// close stops serving, but only after reading what the tree sent: lines
// written just before a process ended must reach the trace. Call it once
// the tree's processes are gone. Connections still waiting in the
// listener's backlog are accepted without blocking, and every connection
// is read until EOF (or drainRead).
func (s *server) close() error {
	if rc, err := s.ln.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			for {
				nfd, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
				if err != nil {
					return // EAGAIN: the backlog is empty
				}
				s.adopt(nfd)
			}
		})
	}
	s.mu.Lock()
	s.closed = true
	err := s.ln.Close()
	deadline := time.Now().Add(drainRead)
	for c := range s.conns {
		c.SetReadDeadline(deadline)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// adopt serves a connection accepted outside accept.
func (s *server) adopt(fd int) {
	f := os.NewFile(uintptr(fd), "forkless-host-conn")
	nc, err := net.FileConn(f)
	f.Close()
	c, ok := nc.(*net.UnixConn)
	if err != nil || !ok {
		if nc != nil {
			nc.Close()
		}
		return
	}
	s.mu.Lock()
	s.conns[c] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go s.serve(c)
}
