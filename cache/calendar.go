package cache

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Calendar is a calendar collection and its properties.
type Calendar struct {
	// User owns the calendar; with ID it identifies the calendar.
	User, ID string
	// DisplayName is the DAV:displayname.
	DisplayName string
	// Description is the CALDAV:calendar-description.
	Description string
	// Color is the calendar-color (Apple namespace), e.g. "#3366cc".
	Color string
	// Order is the calendar-order as given (usually an integer).
	Order string
	// Timezone is the CALDAV:calendar-timezone: a VCALENDAR text with one
	// VTIMEZONE.
	Timezone string
	// Components is the supported component set, e.g. VEVENT, VTODO,
	// VJOURNAL.
	Components []string
	// Kind is "local" (the default of CreateCalendar and UpdateCalendar),
	// "caldav" (mirrors a CalDAV collection: client writes are enqueued in
	// the outbox), "ics" (mirrors a published feed) or "merged" (a view of
	// the calendars named in Members; it holds no objects of its own).
	Kind string
	// Source is the source binding (upstream id, the SourceState.ID),
	// empty for local calendars.
	Source string
	// DeadProps holds dead WebDAV properties: the key is the Clark name
	// "{ns}local", the value the raw XML of the whole property element.
	DeadProps map[string]string
	// Members are, for a calendar of Kind "merged", the IDs of the
	// calendars of the same user that it merges, in order (the first wins
	// ties). The store keeps them as given and does not check them.
	Members []string
	// WriteTo is, for a calendar of Kind "merged", the ID of the member
	// that stores the objects clients write into the merged calendar; ""
	// makes the merged calendar read-only.
	WriteTo string
	// Epoch is 16 random hex characters set by CreateCalendar; it changes
	// if the calendar is deleted and re-created, so sync tokens and ctags
	// of the old calendar can be told apart.
	Epoch string
	// Revision is bumped by every object put or delete. It starts at 0.
	Revision uint64
	// Created is when CreateCalendar stored the calendar (UTC).
	Created time.Time
	// Modified is the time of the last object or property change (UTC).
	Modified time.Time
}

// Values of Calendar.Kind that the store acts on.
const (
	kindLocal  = "local"  // the default
	kindCalDAV = "caldav" // client writes are enqueued in the outbox
)

// calendarRecord is the JSON encoding of a Calendar in bucketCalendars.
// User and ID are the bucket keys and not stored.
type calendarRecord struct {
	DisplayName string            `json:"displayname,omitempty"`
	Description string            `json:"description,omitempty"`
	Color       string            `json:"color,omitempty"`
	Order       string            `json:"order,omitempty"`
	Timezone    string            `json:"timezone,omitempty"`
	Components  []string          `json:"components,omitempty"`
	Kind        string            `json:"kind"`
	Source      string            `json:"source,omitempty"`
	DeadProps   map[string]string `json:"dead_props,omitempty"`
	Members     []string          `json:"members,omitempty"`
	WriteTo     string            `json:"write_to,omitempty"`
	Epoch       string            `json:"epoch"`
	Revision    uint64            `json:"revision"`
	Created     time.Time         `json:"created"`
	Modified    time.Time         `json:"modified"`
}

func encodeCalendar(c *Calendar) ([]byte, error) {
	return json.Marshal(calendarRecord{
		DisplayName: c.DisplayName,
		Description: c.Description,
		Color:       c.Color,
		Order:       c.Order,
		Timezone:    c.Timezone,
		Components:  c.Components,
		Kind:        c.Kind,
		Source:      c.Source,
		DeadProps:   c.DeadProps,
		Members:     c.Members,
		WriteTo:     c.WriteTo,
		Epoch:       c.Epoch,
		Revision:    c.Revision,
		Created:     c.Created,
		Modified:    c.Modified,
	})
}

// decodeCalendar decodes v, which may point into the mmap: json.Unmarshal
// copies everything it keeps.
func decodeCalendar(user, id string, v []byte) (Calendar, error) {
	var r calendarRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Calendar{}, fmt.Errorf("cache: corrupt calendar record %s/%s: %w", user, id, err)
	}
	return Calendar{
		User:        user,
		ID:          id,
		DisplayName: r.DisplayName,
		Description: r.Description,
		Color:       r.Color,
		Order:       r.Order,
		Timezone:    r.Timezone,
		Components:  r.Components,
		Kind:        r.Kind,
		Source:      r.Source,
		DeadProps:   r.DeadProps,
		Members:     r.Members,
		WriteTo:     r.WriteTo,
		Epoch:       r.Epoch,
		Revision:    r.Revision,
		Created:     r.Created,
		Modified:    r.Modified,
	}, nil
}

// getCalendar reads calendar user/id. It returns ErrNotFound if absent.
func getCalendar(tx *bbolt.Tx, user, id string) (Calendar, error) {
	var v []byte
	if u := tx.Bucket(bucketCalendars).Bucket([]byte(user)); u != nil {
		v = u.Get([]byte(id))
	}
	if v == nil {
		return Calendar{}, fmt.Errorf("%w: calendar %s/%s", ErrNotFound, user, id)
	}
	return decodeCalendar(user, id, v)
}

// putCalendar writes c under calendars/{c.User}/{c.ID} and returns the
// encoded value.
func putCalendar(tx *bbolt.Tx, c *Calendar) ([]byte, error) {
	v, err := encodeCalendar(c)
	if err != nil {
		return nil, fmt.Errorf("cache: encode calendar %s/%s: %w", c.User, c.ID, err)
	}
	u, err := tx.Bucket(bucketCalendars).CreateBucketIfNotExists([]byte(c.User))
	if err != nil {
		return nil, err
	}
	return v, u.Put([]byte(c.ID), v)
}

// newEpoch returns 16 random hex characters.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// validCalendarID reports whether user and id can name a calendar.
func validCalendarID(user, id string) error {
	if user == "" || id == "" {
		return fmt.Errorf("%w: empty user or calendar id", ErrInvalid)
	}
	if strings.Contains(id, "/") || id == "." || id == ".." {
		return fmt.Errorf("%w: calendar id %q", ErrInvalid, id)
	}
	return nil
}

// ListCalendars returns the calendars of user sorted by ID. An unknown user
// has an empty list, not an error.
func (s *Store) ListCalendars(user string) ([]Calendar, error) {
	cals := []Calendar{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		u := tx.Bucket(bucketCalendars).Bucket([]byte(user))
		if u == nil || user == "" {
			return nil
		}
		return u.ForEach(func(k, v []byte) error {
			if v == nil { // a nested bucket; none are expected
				return nil
			}
			c, err := decodeCalendar(user, string(k), v)
			if err != nil {
				return err
			}
			cals = append(cals, c)
			return nil
		})
	})
	if err != nil {
		return nil, wrap(err, "list calendars of %s", user)
	}
	return cals, nil
}

// GetCalendar returns calendar user/id, or an error wrapping ErrNotFound.
func (s *Store) GetCalendar(user, id string) (Calendar, error) {
	var c Calendar
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		c, err = getCalendar(tx, user, id)
		return err
	})
	return c, wrap(err, "get calendar %s/%s", user, id)
}

// CreateCalendar stores the new calendar c.User/c.ID and returns the stored
// value. It sets Epoch, Created and Modified, starts Revision at 0, and
// defaults Kind to "local"; the caller's values of those fields are
// ignored (except a non-empty Kind).
//
// It returns ErrExists if the calendar exists, and ErrInvalid if User or
// ID is empty or ID contains '/' (or is "." or "..").
func (s *Store) CreateCalendar(c Calendar) (Calendar, error) {
	if err := validCalendarID(c.User, c.ID); err != nil {
		return Calendar{}, err
	}
	now := time.Now().UTC()
	c.Epoch = newEpoch()
	c.Revision = 0
	c.Created, c.Modified = now, now
	if c.Kind == "" {
		c.Kind = kindLocal
	}
	var out Calendar
	err := s.update(func(tx *bbolt.Tx) error {
		if _, err := getCalendar(tx, c.User, c.ID); err == nil {
			return fmt.Errorf("%w: calendar %s/%s", ErrExists, c.User, c.ID)
		}
		// Leftovers cannot exist (DeleteCalendar removes them in the
		// same transaction), but a new calendar must never show old data.
		for _, root := range [][]byte{bucketObjects, bucketUIDs, bucketChanges, bucketConflicts} {
			if err := deleteCalBucket(tx, root, c.User, c.ID); err != nil {
				return err
			}
		}
		if err := deleteCalendarOutbox(tx, c.User, c.ID); err != nil {
			return err
		}
		v, err := putCalendar(tx, &c)
		if err != nil {
			return err
		}
		out, err = decodeCalendar(c.User, c.ID, v)
		return err
	})
	if err != nil {
		return Calendar{}, wrap(err, "create calendar %s/%s", c.User, c.ID)
	}
	return out, nil
}

// UpdateCalendar reads calendar user/id, calls fn on it and stores the
// result, all in one transaction, and returns the stored value. An error
// from fn aborts the update and is returned as is. fn cannot change User,
// ID, Epoch, Revision or Created; an empty Kind becomes "local". The update
// sets Modified and does not bump Revision. fn must not call the Store.
//
// It returns ErrNotFound if the calendar does not exist.
func (s *Store) UpdateCalendar(user, id string, fn func(*Calendar) error) (Calendar, error) {
	return s.updateCalendar(user, id, fn, false)
}

// UpdateCalendarProps is UpdateCalendar for a client's change of the
// calendar's properties (PROPPATCH): on a calendar of Kind "caldav" it
// also appends, in the same transaction, an outbox entry (Op "proppatch",
// Name PropsName) so that the change is pushed upstream; pending ones are
// coalesced into one.
func (s *Store) UpdateCalendarProps(user, id string, fn func(*Calendar) error) (Calendar, error) {
	return s.updateCalendar(user, id, fn, true)
}

func (s *Store) updateCalendar(user, id string, fn func(*Calendar) error, byClient bool) (Calendar, error) {
	var out Calendar
	var fnErr error
	err := s.update(func(tx *bbolt.Tx) error {
		old, err := getCalendar(tx, user, id)
		if err != nil {
			return err
		}
		c := old
		if fnErr = fn(&c); fnErr != nil {
			return fnErr
		}
		c.User, c.ID, c.Epoch, c.Revision, c.Created = old.User, old.ID, old.Epoch, old.Revision, old.Created
		if c.Kind == "" {
			c.Kind = kindLocal
		}
		c.Modified = time.Now().UTC()
		v, err := putCalendar(tx, &c)
		if err != nil {
			return err
		}
		if byClient && c.Kind == kindCalDAV {
			if err := enqueue(tx, user, id, PropsName, outboxProps, nil, c.Modified); err != nil {
				return err
			}
		}
		out, err = decodeCalendar(user, id, v)
		return err
	})
	if fnErr != nil {
		return Calendar{}, fnErr
	}
	if err != nil {
		return Calendar{}, wrap(err, "update calendar %s/%s", user, id)
	}
	return out, nil
}

// DeleteCalendar removes calendar user/id with all its objects, its UID
// index, its change log, its pending outbox entries (the writes are not
// pushed) and its conflicts, in one transaction. The sync state of its
// source (SourceState) is left alone: it belongs to the source.
//
// It returns ErrNotFound if the calendar does not exist.
func (s *Store) DeleteCalendar(user, id string) error {
	err := s.update(func(tx *bbolt.Tx) error {
		if _, err := getCalendar(tx, user, id); err != nil {
			return err
		}
		u := tx.Bucket(bucketCalendars).Bucket([]byte(user))
		if err := u.Delete([]byte(id)); err != nil {
			return err
		}
		if k, _ := u.Cursor().First(); k == nil {
			if err := tx.Bucket(bucketCalendars).DeleteBucket([]byte(user)); err != nil {
				return err
			}
		}
		for _, root := range [][]byte{bucketObjects, bucketUIDs, bucketChanges, bucketConflicts} {
			if err := deleteCalBucket(tx, root, user, id); err != nil {
				return err
			}
		}
		return deleteCalendarOutbox(tx, user, id)
	})
	if err != nil {
		return wrap(err, "delete calendar %s/%s", user, id)
	}
	return nil
}
