package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SetMeta stores value under key, replacing any earlier value. When it
// returns nil the value is on stable storage.
func (db *DB) SetMeta(ctx context.Context, key, value string) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("set meta: %w", err)
	}
	if key == "" {
		return errors.New("set meta: empty key")
	}
	if _, err := db.exec(ctx,
		`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		key, value); err != nil {
		return fmt.Errorf("set meta %s: %w", key, err)
	}
	return nil
}

// Meta returns the value stored under key and whether there is one.
func (db *DB) Meta(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := db.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("read meta %s: %w", key, err)
	}
	return v, true, nil
}

// DeleteMeta removes key. Deleting a missing key is not an error.
func (db *DB) DeleteMeta(ctx context.Context, key string) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("delete meta: %w", err)
	}
	if _, err := db.exec(ctx, `DELETE FROM meta WHERE key = ?`, key); err != nil {
		return fmt.Errorf("delete meta %s: %w", key, err)
	}
	return nil
}
