package main

// state is what one generation hands to the next as the fork payload.
type state struct {
	Generation int   `json:"generation"`
	Served     int64 `json:"served"` // requests answered by all earlier generations
}

// Numbers of the handed-over descriptors in the new copy.
const (
	listenerNumber = 3
	readyNumber    = 4 // the pipe the copy writes to once it serves
)
