// Package httpdrain stops an HTTP server without dropping a request: the
// examples use it when a worker stops or a server hands over.
package httpdrain

import (
	"net"
	"net/http"
	"sync"
)

// Conns counts a server's open connections through its ConnState hook.
//
// A server that stops (a prefork worker, or the old copy in a handover)
// cannot use http.Server.Shutdown: a connection accepted just before
// Shutdown whose request is read just after it is closed without a reply
// (net/http returns from conn.serve when it finds the server shutting down
// after reading a request). Instead the server stops accepting (others take
// the queued connections), turns keep-alives off so that every connection
// closes after its current request, and waits for the count to reach zero.
type Conns struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func NewConns() *Conns {
	c := &Conns{}
	c.zero = sync.NewCond(&c.mu)
	return c
}

// Track is the http.Server ConnState hook.
func (c *Conns) Track(_ net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateNew:
		c.n++
	case http.StateClosed, http.StateHijacked:
		if c.n--; c.n == 0 {
			c.zero.Broadcast()
		}
	}
}

// Wait returns once every connection has closed.
func (c *Conns) Wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n > 0 {
		c.zero.Wait()
	}
}

// Drain stops srv accepting on ln and waits until every connection it
// accepted has been answered and closed. served delivers Serve's return.
func Drain(srv *http.Server, ln net.Listener, cs *Conns, served <-chan error) {
	srv.SetKeepAlivesEnabled(false)
	ln.Close()
	<-served // Serve has returned: no connection can be added any more
	cs.Wait()
}
