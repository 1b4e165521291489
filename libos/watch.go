package libos

import (
	"sync"

	"golang.org/x/sys/unix"
)

// watcher learns when processes end: one pidfd per process (pidfd_open,
// which holds no reference to the process's files), all in one epoll set
// served by one goroutine. A pidfd becomes readable when its process
// ends, whether or not anybody reaps it.
type watcher struct {
	ep, wake int
	onExit   func(pid int)

	mu     sync.Mutex
	fds    map[int]int // pidfd -> pid
	closed bool
	done   chan struct{}
}

func newWatcher(onExit func(pid int)) (*watcher, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, err
	}
	w := &watcher{ep: ep, wake: wake, onExit: onExit, fds: map[int]int{}, done: make(chan struct{})}
	go w.loop()
	return w, nil
}

// add watches pid. An error means pid does not exist (any more).
func (w *watcher) add(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		unix.Close(fd)
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return err
	}
	w.fds[fd] = pid
	return nil
}

func (w *watcher) loop() {
	defer close(w.done)
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.ep, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		var ended []int
		w.mu.Lock()
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd == w.wake {
				if w.closed {
					w.mu.Unlock()
					return
				}
				continue
			}
			pid, ok := w.fds[fd]
			if !ok {
				continue
			}
			delete(w.fds, fd)
			unix.EpollCtl(w.ep, unix.EPOLL_CTL_DEL, fd, nil)
			unix.Close(fd)
			ended = append(ended, pid)
		}
		w.mu.Unlock()
		for _, pid := range ended {
			w.onExit(pid)
		}
	}
}

// killAll sends SIGKILL to every watched process that has not ended.
func (w *watcher) killAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for fd := range w.fds {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}

func (w *watcher) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	var one = [8]byte{1}
	unix.Write(w.wake, one[:])
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	for fd := range w.fds {
		unix.Close(fd)
	}
	w.fds = nil
	w.mu.Unlock()
	unix.Close(w.ep)
	unix.Close(w.wake)
}
