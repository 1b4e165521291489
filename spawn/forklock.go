package spawn

import (
	"sync"
	"syscall"
	"time"
)

// Spawns hold syscall.ForkLock for writing, as os/exec does, so that code
// which creates a descriptor and then sets FD_CLOEXEC under the read lock
// can never leak it into a child. Like the standard library since Go 1.21,
// concurrent spawns share one write lock through a counter instead of
// queueing on it: the first takes it, the last releases it.
//
// The standard library lets waiting readers in by peeking at the RWMutex;
// that hook is private, so a group instead stops admitting new spawns after
// it has held the lock for groupSpan, letting the lock go idle once.
const groupSpan = 2 * time.Millisecond

var forkGroup struct {
	mu       sync.Mutex
	drained  *sync.Cond
	members  int
	since    time.Time
	draining bool
}

func init() { forkGroup.drained = sync.NewCond(&forkGroup.mu) }

func acquireForkLock() {
	g := &forkGroup
	g.mu.Lock()
	for g.draining {
		g.drained.Wait()
	}
	if g.members == 0 {
		syscall.ForkLock.Lock()
		g.since = time.Now()
	} else if time.Since(g.since) > groupSpan {
		// Let readers in: wait for this group to finish, then start anew.
		g.draining = true
		for g.members > 0 {
			g.drained.Wait()
		}
		g.draining = false
		g.drained.Broadcast()
		g.mu.Unlock()
		syscall.ForkLock.RLock() // readers queued behind the old group go first
		syscall.ForkLock.RUnlock()
		acquireForkLock()
		return
	}
	g.members++
	g.mu.Unlock()
}

func releaseForkLock() {
	g := &forkGroup
	g.mu.Lock()
	g.members--
	if g.members == 0 {
		syscall.ForkLock.Unlock()
		g.drained.Broadcast()
	}
	g.mu.Unlock()
}
