package state

import (
	"context"
	"fmt"
	"strings"
)

// keyTrustPrefix keys, in the meta table, how each package-mode difusor
// trusts the institute's key, as its "prepcast apply" greeting said.
const keyTrustPrefix = "key-trust/"

// SetKeyTrust records how target's "prepcast apply" trusts the institute's
// key: "public-key", "trust-on-first-use" or "none" (applyproto's values).
func (db *DB) SetKeyTrust(ctx context.Context, target, trust string) error {
	if old, ok, err := db.Meta(ctx, keyTrustPrefix+target); err == nil && ok && old == trust {
		return nil // unchanged: no write on every push
	}
	return db.SetMeta(ctx, keyTrustPrefix+target, trust)
}

// KeyTrusts returns how every package-mode target last said it trusts the
// institute's key, by target.
func (db *DB) KeyTrusts(ctx context.Context) (map[string]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT key, value FROM meta WHERE key >= ? AND key < ?`,
		keyTrustPrefix, keyTrustPrefix[:len(keyTrustPrefix)-1]+"0")
	if err != nil {
		return nil, fmt.Errorf("read key trust: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("read key trust: %w", err)
		}
		out[strings.TrimPrefix(k, keyTrustPrefix)] = v
	}
	return out, rows.Err()
}
