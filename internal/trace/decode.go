package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// LineError is a problem with one line of a trace.
type LineError struct {
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Reader reads events from a trace one line at a time.
type Reader struct {
	br   *bufio.Reader
	line int
	err  error // sticky: a read error or io.EOF
}

// NewReader returns a Reader reading r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, MaxLine+1)}
}

// Line returns the number of the line Next read last.
func (r *Reader) Line() int { return r.line }

// Next returns the next event. A bad line gives a *LineError and the next
// call goes on with the following line. Blank lines are skipped. At the
// end Next returns io.EOF; any other error that is not a *LineError comes
// from the underlying reader and is final.
func (r *Reader) Next() (Event, error) {
	for {
		if r.err != nil {
			return Event{}, r.err
		}
		line, tooLong, err := r.readLine()
		if err != nil {
			r.err = err
		}
		if tooLong {
			return Event{}, &LineError{r.line, fmt.Errorf("line longer than %d bytes", MaxLine)}
		}
		if line == nil {
			continue // end of input, or a read error: reported by the next round
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		ev, perr := ParseLine(line)
		if perr != nil {
			return Event{}, &LineError{r.line, perr}
		}
		return ev, nil
	}
}

// readLine returns the next line without its newline, or nil at the end of
// input. A line longer than MaxLine is skipped and reported with tooLong.
func (r *Reader) readLine() (line []byte, tooLong bool, err error) {
	var n int
	for {
		b, err := r.br.ReadSlice('\n')
		n += len(b)
		if errors.Is(err, bufio.ErrBufferFull) {
			// The buffer holds MaxLine+1 bytes: the line is too long.
			// Skip to its end.
			tooLong = true
			continue
		}
		if n == 0 {
			return nil, false, err // ReadSlice returned no data, so err != nil
		}
		r.line++
		if tooLong {
			return nil, true, err
		}
		return bytes.TrimSuffix(b, []byte{'\n'}), false, err
	}
}

// Decode reads a whole trace. It returns the good events in file order and
// one error per bad line (*LineError), plus a final error if reading failed.
func Decode(r io.Reader) ([]Event, []error) {
	var evs []Event
	var errs []error
	rd := NewReader(r)
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return evs, errs
		}
		if err != nil {
			errs = append(errs, err)
			var le *LineError
			if !errors.As(err, &le) {
				return evs, errs
			}
			continue
		}
		evs = append(evs, ev)
	}
}

// required lists the fields every line must have.
var required = []string{"v", "ts_ns", "pid", "ppid", "tid", "event", "via", "errno"}

// ParseLine decodes and validates one line (without its newline).
func ParseLine(line []byte) (Event, error) {
	var ev Event
	seen := make(map[string]bool, 16)
	err := parseObject(line, func(key string, raw json.RawMessage) error {
		seen[key] = true
		return ev.setField(key, raw)
	})
	if err != nil {
		return Event{}, err
	}
	var missing []string
	for _, k := range required {
		if !seen[k] {
			missing = append(missing, fmt.Sprintf("%q", k))
		}
	}
	if len(missing) > 0 {
		return Event{}, fmt.Errorf("missing field %s", strings.Join(missing, ", "))
	}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// setField stores the value of one field.
func (ev *Event) setField(key string, raw json.RawMessage) error {
	var err error
	switch key {
	case "v":
		err = decodeInt(raw, &ev.V)
	case "ts_ns":
		err = decodeInt(raw, &ev.TsNs)
	case "pid":
		err = decodeInt(raw, &ev.PID)
	case "ppid":
		err = decodeInt(raw, &ev.PPID)
	case "tid":
		err = decodeInt(raw, &ev.TID)
	case "event":
		err = decodeString(raw, &ev.Event)
	case "via":
		err = decodeString(raw, &ev.Via)
	case "errno":
		err = decodeInt(raw, &ev.Errno)
	case "child":
		err = decodeInt(raw, &ev.Child)
	case "path":
		err = decodeString(raw, &ev.Path)
	case "argv":
		err = decodeArgv(raw, &ev.Argv)
	case "argv_truncated":
		err = decodeBool(raw, &ev.ArgvTruncated)
	case "fds":
		err = decodeFDs(raw, &ev.FDs)
	case "fds_truncated":
		err = decodeBool(raw, &ev.FDsTruncated)
	case "dur_us":
		err = decodeInt(raw, &ev.DurUS)
	case "threads":
		err = decodeInt(raw, &ev.Threads)
	case "strict_closed":
		err = decodeInt(raw, &ev.StrictClosed)
	case "fallback":
		err = decodeString(raw, &ev.Fallback)
	case "platform":
		err = decodeString(raw, &ev.Platform)
	case "policy":
		err = decodeString(raw, &ev.Policy)
	case "status":
		var st int
		err = decodeInt(raw, &st)
		ev.Status = &st
	default:
		return fmt.Errorf("unknown field %q", key)
	}
	if err != nil {
		return fmt.Errorf("field %q: %w", key, err)
	}
	return nil
}

// parseObject walks one JSON object, calling field for each member in
// order. Field names are matched exactly (encoding/json alone would match
// them case-insensitively); a duplicate name, a value that is not an
// object, or anything after the object is an error.
func parseObject(data []byte, field func(key string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want a JSON object, got %s", describe(data))
	}
	seen := make(map[string]bool, 16)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("invalid JSON: object key is not a string")
		}
		if seen[key] {
			return fmt.Errorf("duplicate field %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxError(err)
		}
		if err := field(key, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON: data after the object")
	}
	return nil
}

func syntaxError(err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of line")
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// describe shows the start of a raw value in an error message.
func describe(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	const max = 40
	if len(raw) > max {
		return fmt.Sprintf("%q...", raw[:max])
	}
	return fmt.Sprintf("%q", raw)
}

// kind reports the JSON type of a raw value by its first byte; '0' for
// a number.
func kind(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	switch c := raw[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		return '0'
	default:
		return c // '"', '[', '{', 't', 'f', 'n' (null)
	}
}

func decodeInt[T int | int64](raw json.RawMessage, dst *T) error {
	if kind(raw) != '0' || json.Unmarshal(raw, dst) != nil {
		return fmt.Errorf("want an integer, got %s", describe(raw))
	}
	return nil
}

func decodeString(raw json.RawMessage, dst *string) error {
	if kind(raw) != '"' || json.Unmarshal(raw, dst) != nil {
		return fmt.Errorf("want a string, got %s", describe(raw))
	}
	return nil
}

func decodeBool(raw json.RawMessage, dst *bool) error {
	if k := kind(raw); (k != 't' && k != 'f') || json.Unmarshal(raw, dst) != nil {
		return fmt.Errorf("want true or false, got %s", describe(raw))
	}
	return nil
}

// decodeArray splits a JSON array into its elements.
func decodeArray(raw json.RawMessage) ([]json.RawMessage, error) {
	var elems []json.RawMessage
	if kind(raw) != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, fmt.Errorf("want an array, got %s", describe(raw))
	}
	return elems, nil
}

func decodeArgv(raw json.RawMessage, dst *[]string) error {
	elems, err := decodeArray(raw)
	if err != nil {
		return err
	}
	var argv []string // an empty array decodes as nil, as Marshal omits it
	for i, el := range elems {
		var s string
		if err := decodeString(el, &s); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		argv = append(argv, s)
	}
	*dst = argv
	return nil
}

func decodeFDs(raw json.RawMessage, dst *[]FD) error {
	elems, err := decodeArray(raw)
	if err != nil {
		return err
	}
	var fds []FD
	for i, el := range elems {
		if kind(el) != '{' {
			return fmt.Errorf("entry %d: want an object, got %s", i, describe(el))
		}
		var fd FD
		var hasFD, hasTarget bool
		err := parseObject(el, func(key string, raw json.RawMessage) error {
			var err error
			switch key {
			case "fd":
				hasFD, err = true, decodeInt(raw, &fd.FD)
			case "target":
				hasTarget, err = true, decodeString(raw, &fd.Target)
			case "flags":
				err = decodeInt(raw, &fd.Flags)
			default:
				return fmt.Errorf("unknown field %q", key)
			}
			if err != nil {
				return fmt.Errorf("field %q: %w", key, err)
			}
			return nil
		})
		if err == nil && !hasFD {
			err = errors.New(`missing field "fd"`)
		}
		if err == nil && !hasTarget {
			err = errors.New(`missing field "target"`)
		}
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		fds = append(fds, fd)
	}
	*dst = fds
	return nil
}

// Marshal encodes e as one trace line, without the newline. It does not
// escape <, > and & as encoding/json does by default.
func Marshal(e Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}
