package forkcp

// Checkpoint is what one stream carries: a header describing the process
// that wrote it, the handle table and an opaque application payload. The
// descriptors themselves travel beside the stream (SCM_RIGHTS, or spawn
// file actions), in the order of Entries.
type Checkpoint struct {
	Header  Header
	Entries []Entry
	Payload []byte
}

// Header describes the process that wrote a checkpoint.
type Header struct {
	Pid     int
	Ppid    int
	Cwd     string
	Umask   uint32   // 0..0777
	SigMask uint64   // bit n-1 set: signal n blocked (the writing thread's mask)
	Argv    []string // nil: not recorded
	Env     []string // nil: not recorded
}

// Entry is one row of the handle table: what a descriptor's number, flags
// and open file were in the writing process.
type Entry struct {
	Number      int // 0..MaxNumber; strictly increasing within a table
	Flags       Flags
	Kind        Kind
	Description string // at most MaxDescription bytes
}

// entrySource is a handle table being encoded: a Snapshot, or a slice of
// entries.
type entrySource interface {
	Len() int
	Entry(i int) Entry
}

type entryList []Entry

func (l entryList) Len() int          { return len(l) }
func (l entryList) Entry(i int) Entry { return l[i] }
