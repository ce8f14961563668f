package state

import (
	"database/sql"
	"fmt"
	"math"
	"time"
)

// Timestamps are stored as INTEGER unix nanoseconds (UTC by definition), or
// NULL for the zero time. They read back as the same instant, in UTC, without
// a monotonic clock reading.

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// nanos converts t for storage: NULL for the zero time, an error for a time
// outside the years 1678 to 2262.
func nanos(t time.Time) (sql.NullInt64, error) {
	if t.IsZero() {
		return sql.NullInt64{}, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return sql.NullInt64{}, fmt.Errorf("time %s is outside the storable range %s to %s",
			t.Format(time.RFC3339Nano), minTime.UTC().Format(time.RFC3339), maxTime.UTC().Format(time.RFC3339))
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}, nil
}

// fromNanos is the inverse of nanos.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}
