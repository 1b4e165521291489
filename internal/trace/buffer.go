package trace

import (
	"bytes"
	"sync"
)

// Buffer is an in-memory trace that concurrent writers may append lines
// to, each Write whole (as the libos host writes them).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// Decode decodes what was written so far (see Decode).
func (b *Buffer) Decode() ([]Event, []error) {
	b.mu.Lock()
	data := bytes.Clone(b.b.Bytes())
	b.mu.Unlock()
	return Decode(bytes.NewReader(data))
}
