package forkcp

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Errors of the checkpoint stream. A *FormatError wraps exactly one of
// them, so callers can test the class with errors.Is.
var (
	// ErrMagic: the bytes are not a forkcp checkpoint stream.
	ErrMagic = errors.New("not a forkcp checkpoint stream")
	// ErrVersion: the stream's version is not one this package reads.
	ErrVersion = errors.New("unsupported stream version")
	// ErrTruncated: the stream ends before its declared length.
	ErrTruncated = errors.New("truncated")
	// ErrTooLarge: a length or count exceeds the decoder's Limits.
	ErrTooLarge = errors.New("exceeds limit")
	// ErrChecksum: the stream's CRC-32C does not match its contents.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrCorrupt: a field holds a value the format does not allow.
	ErrCorrupt = errors.New("corrupt")
)

// FormatError reports why a checkpoint stream was rejected and where.
type FormatError struct {
	Offset int64  // byte offset of the offending field in the stream
	Field  string // the field, e.g. "handle 3 description"
	Err    error  // ErrMagic, ErrVersion, ErrTruncated, ErrTooLarge, ErrChecksum or ErrCorrupt
	Detail string // what was found, for the message
}

func (e *FormatError) Error() string {
	msg := fmt.Sprintf("forkcp: checkpoint stream: %s at offset %d: %v", e.Field, e.Offset, e.Err)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

func (e *FormatError) Unwrap() error { return e.Err }

// Errors of handles, maps and snapshots.
var (
	// ErrBadNumber: no handle is installed at the number. It wraps EBADF.
	ErrBadNumber = fmt.Errorf("no handle at this number (%w)", unix.EBADF)
	// ErrNumberRange: the number is outside 0..MaxNumber. It wraps EBADF.
	ErrNumberRange = fmt.Errorf("number outside 0..%d (%w)", MaxNumber, unix.EBADF)
	// ErrMapFull: every number of the map is in use. It wraps EMFILE.
	ErrMapFull = fmt.Errorf("every number is in use (%w)", unix.EMFILE)
	// ErrReleased: the snapshot was released before it was used.
	ErrReleased = errors.New("forkcp: snapshot already released")
)

// NumberError reports a HandleMap operation that failed on a number.
type NumberError struct {
	Op     string // "close", "dup2", ...
	Number int
	Err    error // ErrBadNumber, ErrNumberRange or ErrMapFull
}

func (e *NumberError) Error() string { return fmt.Sprintf("forkcp: %s %d: %v", e.Op, e.Number, e.Err) }

func (e *NumberError) Unwrap() error { return e.Err }

// Errors of Fork and Restore.
var (
	// ErrNotForked: Restore was called in a process that Fork did not
	// start (the FORKCP_CHECKPOINT environment variable is not set).
	ErrNotForked = errors.New("forkcp: this process was not started by forkcp.Fork (" + EnvCheckpoint + " is not set)")
	// ErrRestored: Restore was called a second time.
	ErrRestored = errors.New("forkcp: Restore already called in this process")
)

// ErrControlTruncated: a received message carried more descriptors than
// could be installed (the receiver's descriptor limit) or than its control
// buffer holds. The kernel closed the excess; forkcp closes the rest.
var ErrControlTruncated = errors.New("control message truncated (MSG_CTRUNC): descriptors were lost, is the descriptor limit reached?")

// TransportError reports a failure to send or receive a checkpoint.
// Descriptors received before the failure have been closed.
type TransportError struct {
	Op  string // "send" or "receive"
	Err error
}

func (e *TransportError) Error() string { return "forkcp: " + e.Op + ": " + e.Err.Error() }

func (e *TransportError) Unwrap() error { return e.Err }
