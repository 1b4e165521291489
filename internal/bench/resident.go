package bench

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Resident is anonymous memory made resident in this process, standing for
// the heap of a big program that spawns children.
type Resident struct {
	mem []byte
}

// MakeResident maps mib MiB and writes to every page. The mapping asks for
// no transparent huge pages: with 4 KiB pages the page tables grow with
// the memory, as they do for most real heaps, and fork pays for them.
func MakeResident(mib int) (*Resident, error) {
	if mib <= 0 {
		return &Resident{}, nil
	}
	size := mib << 20
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap %d MiB: %w", mib, err)
	}
	_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	page := os.Getpagesize()
	for off := 0; off < size; off += page {
		mem[off] = 1
	}
	return &Resident{mem: mem}, nil
}

// Size returns the resident size in bytes.
func (r *Resident) Size() int { return len(r.mem) }

// Release unmaps the memory. Releasing twice does nothing.
func (r *Resident) Release() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}
