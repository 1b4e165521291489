package bench

import (
	"encoding/json"
	"io"
	"math"
)

// jsonCell is the JSON form of a Row. The field names are an interface:
// scripts read them.
type jsonCell struct {
	Engine string  `json:"engine"`
	Host   string  `json:"host"`
	Target string  `json:"target"`
	RSSMiB int     `json:"rss_mib"`
	N      int     `json:"n"`
	P50    float64 `json:"p50_us"`
	P10    float64 `json:"p10_us"`
	P90    float64 `json:"p90_us"`
	Min    float64 `json:"min_us"`
}

// WriteJSON writes rows as a JSON array of cells, one object per row.
func WriteJSON(w io.Writer, rows []Row) error {
	cells := make([]jsonCell, 0, len(rows))
	for _, r := range rows {
		cells = append(cells, jsonCell{
			Engine: r.Engine, Host: r.Host, Target: r.Target, RSSMiB: r.RSSMiB,
			N: r.N, P50: round3(r.P50), P10: round3(r.P10), P90: round3(r.P90), Min: round3(r.Min),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(cells)
}

// round3 keeps nanosecond resolution of a microsecond value.
func round3(us float64) float64 {
	return math.Round(us*1000) / 1000
}
