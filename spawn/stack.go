package spawn

import (
	"sync"

	"golang.org/x/sys/unix"
)

// Child stacks are mmap'd once and reused. The child's interpreter keeps
// everything in registers, so the stack only has to exist; a guard page
// below it turns an overrun into a fault instead of silent corruption.
const (
	stackSize = 16 << 10
	guardSize = 4 << 10
	maxIdle   = 64 // stacks kept for reuse
)

type stackPool struct {
	mu   sync.Mutex
	free [][]byte
}

var stacks stackPool

// get returns a stack mapping; the usable stack is above the guard page.
func (sp *stackPool) get() ([]byte, error) {
	sp.mu.Lock()
	if n := len(sp.free); n > 0 {
		s := sp.free[n-1]
		sp.free = sp.free[:n-1]
		sp.mu.Unlock()
		return s, nil
	}
	sp.mu.Unlock()
	m, err := unix.Mmap(-1, 0, guardSize+stackSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_STACK)
	if err != nil {
		return nil, err
	}
	if err := unix.Mprotect(m[:guardSize], unix.PROT_NONE); err != nil {
		_ = unix.Munmap(m)
		return nil, err
	}
	return m, nil
}

func (sp *stackPool) put(s []byte) {
	sp.mu.Lock()
	if len(sp.free) < maxIdle {
		sp.free = append(sp.free, s)
		s = nil
	}
	sp.mu.Unlock()
	if s != nil {
		_ = unix.Munmap(s)
	}
}
