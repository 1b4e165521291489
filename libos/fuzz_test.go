package libos

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzHostMessage feeds arbitrary messages to the host's handler, as a
// client of its socket could send them: nothing may panic, a reply is only
// ever a well-formed header, and the host's accounting stays sound (every
// reservation made is released by the settles that follow).
func FuzzHostMessage(f *testing.F) {
	f.Add([]byte(`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"exit","via":"exit","errno":0,"status":0}`))
	f.Add([]byte(`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"fork","errno":0,"child":11,"fds":[{"fd":3,"target":"x","flags":1}]}` + "\n"))
	f.Add(header{Magic: ProtoMagic, Type: MsgAdmit, PID: 7}.bytes(nil))
	f.Add(header{Magic: ProtoMagic, Type: MsgSettle, PID: 7}.bytes(nil))
	f.Add(header{Magic: ProtoMagic, Type: MsgAdopt, PID: 7}.bytes([]byte("payload")))
	f.Add(header{Magic: ProtoMagic, Type: 99, PID: -1}.bytes(nil))
	f.Add([]byte("{"))
	f.Add([]byte{0})
	h, err := NewHost(Config{Policy: Policy{MaxProcs: 2}, Trace: io.Discard, NoGuard: true, NoCgroup: true, Dir: f.TempDir()})
	require.NoError(f, err)
	f.Cleanup(func() { h.Close() })
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) == 0 {
			return // the server skips empty reads before handle
		}
		held := map[int]int{}
		reply := h.srv.handle(msg, 7, held)
		if reply != nil {
			m, ok := parseHeader(reply)
			require.True(t, ok, "a reply has the magic")
			require.True(t, m.Type == MsgAdmitReply || m.Type == MsgAdoptReply, "reply type %#x", m.Type)
		}
		for pid, n := range held {
			for range n {
				h.Settle(pid)
			}
		}
		h.mu.Lock()
		reserved := h.reserved
		h.mu.Unlock()
		require.Zero(t, reserved, "no reservation outlives its connection")
	})
}
