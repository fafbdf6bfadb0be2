package cache

import "go.etcd.io/bbolt"

// CalendarStats are the counts the status page and the metrics show for
// one calendar.
type CalendarStats struct {
	User, Cal string
	// Kind is the calendar's Kind ("local" if unset).
	Kind string
	// Objects counts the calendar's objects.
	Objects int
	// Pending counts the outbox entries waiting for the upstream.
	Pending int
	// Conflicts counts the stored conflicts.
	Conflicts int
}

// Stats returns the counts of every calendar of user (of every user if
// user is ""), ordered by user and calendar id, from one read
// transaction. It reads keys only, never object data: a calendar of
// 10,000 objects costs a walk over its key pages.
func (s *Store) Stats(user string) ([]CalendarStats, error) {
	var out []CalendarStats
	err := s.db.View(func(tx *bbolt.Tx) error {
		out = out[:0]
		cals := tx.Bucket(bucketCalendars)
		pending := tx.Bucket(bucketOutbox).Bucket(keyPending)
		conflicts := tx.Bucket(bucketConflicts)
		return eachBucket(cals, func(u []byte, ub *bbolt.Bucket) error {
			if user != "" && string(u) != user {
				return nil
			}
			return ub.ForEach(func(id, v []byte) error {
				c, err := decodeCalendar(string(u), string(id), v)
				if err != nil {
					return err
				}
				st := CalendarStats{User: c.User, Cal: c.ID, Kind: c.Kind}
				if st.Kind == "" {
					st.Kind = kindLocal
				}
				st.Objects = countKeys(calBucket(tx, bucketObjects, c.User, c.ID))
				if pending != nil {
					st.Pending = countKeys(nested(pending, u, id))
				}
				if names := nested(conflicts, u, id); names != nil {
					err := eachBucket(names, func(_ []byte, nb *bbolt.Bucket) error {
						st.Conflicts += countKeys(nb)
						return nil
					})
					if err != nil {
						return err
					}
				}
				out = append(out, st)
				return nil
			})
		})
	})
	if err != nil {
		if user == "" {
			return nil, wrap(err, "stats")
		}
		return nil, wrap(err, "stats of %s", user)
	}
	return out, nil
}

// nested returns b/{user}/{cal}, or nil if a level is missing.
func nested(b *bbolt.Bucket, user, cal []byte) *bbolt.Bucket {
	if b == nil {
		return nil
	}
	if u := b.Bucket(user); u != nil {
		return u.Bucket(cal)
	}
	return nil
}

// countKeys counts the keys of b (nil counts 0) without reading values.
func countKeys(b *bbolt.Bucket) int {
	if b == nil {
		return 0
	}
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
