package forkcp

// Limits bound what a decoder accepts, and so what it allocates. A zero
// field takes its default.
type Limits struct {
	MaxStreamBytes int64 // the whole stream, preamble and checksum included; default 64 MiB
	MaxHandles     int   // entries of the handle table; default MaxNumber+1
	MaxPayload     int64 // the application payload; default 32 MiB
	MaxStrings     int   // argv entries, and env entries; default 65536 each
	MaxStringBytes int   // cwd, and each argv or env string; default 128 KiB (the kernel's MAX_ARG_STRLEN)
	MaxDescription int   // each handle description; default and ceiling MaxDescription
}

// DefaultLimits are the limits used when none are given.
var DefaultLimits = Limits{
	MaxStreamBytes: 64 << 20,
	MaxHandles:     MaxNumber + 1,
	MaxPayload:     32 << 20,
	MaxStrings:     1 << 16,
	MaxStringBytes: 128 << 10,
	MaxDescription: MaxDescription,
}

// withDefaults returns l (nil allowed) with its zero or negative fields
// replaced by the defaults.
func (l *Limits) withDefaults() Limits {
	d := DefaultLimits
	if l == nil {
		return d
	}
	out := *l
	if out.MaxStreamBytes <= 0 {
		out.MaxStreamBytes = d.MaxStreamBytes
	}
	if out.MaxHandles <= 0 {
		out.MaxHandles = d.MaxHandles
	}
	if out.MaxPayload <= 0 {
		out.MaxPayload = d.MaxPayload
	}
	if out.MaxStrings <= 0 {
		out.MaxStrings = d.MaxStrings
	}
	if out.MaxStringBytes <= 0 {
		out.MaxStringBytes = d.MaxStringBytes
	}
	if out.MaxDescription <= 0 || out.MaxDescription > MaxDescription {
		out.MaxDescription = d.MaxDescription
	}
	return out
}
