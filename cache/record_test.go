package cache

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestObjectRecordRoundTrip(t *testing.T) {
	for _, o := range []Object{
		{Name: "zero.ics", UID: "u"},
		{
			Name: "full.ics", UID: "ü-1", Component: "VTODO",
			Start:    time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), // near the zero time, but not zero
			End:      time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			ETag:     "00112233445566778899aabbccddeeff",
			Modified: time.Date(2025, 6, 1, 12, 0, 0, 5, time.UTC),
			Revision: 1<<64 - 1,
			Warnings: []string{"a", "", "unknown TZID"},
			Data:     []byte("BEGIN:VCALENDAR\r\n"),

			UpstreamHref: "/dav/cal/full.ics",
			UpstreamETag: `W/"x-1"`,
			Exact:        true,
		},
	} {
		v := encodeObject(&o)
		got, err := decodeObject(o.Name, v, true)
		if err != nil {
			t.Fatalf("%s: %v", o.Name, err)
		}
		want := o
		want.Size = int64(len(o.Data))
		if want.Data == nil {
			want.Data = []byte{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}
		meta, err := decodeObject(o.Name, v, false)
		if err != nil || meta.Data != nil || meta.Size != want.Size {
			t.Errorf("metadata only: %+v, %v", meta, err)
		}
		// Every truncation of the header is detected, never a panic.
		hl := int(v[3]) // headers here are shorter than 256 bytes
		for n := 0; n < 4+hl; n++ {
			if _, err := decodeObject(o.Name, v[:n], false); !errors.Is(err, errCorrupt) {
				t.Errorf("%s truncated to %d bytes: err = %v", o.Name, n, err)
			}
		}
		// So is a header cut short with a consistent length prefix,
		// except where it ends exactly as an older record's header: that
		// is an older record.
		oldHL := len(encodeObjectV1(&o)) - 4 - len(o.Data)
		for k := 1; k < hl; k++ {
			cut := append([]byte{0, 0, 0, byte(k)}, v[4:4+k]...)
			got, err := decodeObject(o.Name, cut, false)
			if k == oldHL {
				if err != nil || got.UID != o.UID || got.UpstreamHref != "" || got.UpstreamETag != "" {
					t.Errorf("%s header cut to the old layout: %+v, %v", o.Name, got, err)
				}
				continue
			}
			if k == hl-1 { // the layout before the flags (one byte here)
				if err != nil || got.UpstreamETag != o.UpstreamETag || got.Exact {
					t.Errorf("%s header cut to the layout without flags: %+v, %v", o.Name, got, err)
				}
				continue
			}
			if !errors.Is(err, errCorrupt) {
				t.Errorf("%s header cut to %d bytes: err = %v", o.Name, k, err)
			}
		}
	}
}

func TestETagOf(t *testing.T) {
	// sha256("") = e3b0c44298fc1c149afbf4c8996fb924...
	if got := etagOf(nil); got != "e3b0c44298fc1c149afbf4c8996fb924" {
		t.Errorf("etagOf(nil) = %q", got)
	}
}

// encodeObjectV1 encodes o in the record layout written before the
// upstream fields were added, by hand, as an older calgate did.
func encodeObjectV1(o *Object) []byte {
	str := func(b []byte, s string) []byte {
		b = binary.AppendUvarint(b, uint64(len(s)))
		return append(b, s...)
	}
	tm := func(b []byte, t time.Time) []byte {
		if t.IsZero() {
			return append(b, 0)
		}
		b = append(b, 1)
		b = binary.AppendVarint(b, t.Unix())
		return binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	b := []byte{0, 0, 0, 0, 1}
	b = str(b, o.UID)
	b = str(b, o.Component)
	b = str(b, o.ETag)
	b = tm(b, o.Start)
	b = tm(b, o.End)
	b = tm(b, o.Modified)
	b = binary.AppendUvarint(b, o.Revision)
	b = binary.AppendUvarint(b, uint64(len(o.Warnings)))
	for _, w := range o.Warnings {
		b = str(b, w)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return append(b, o.Data...)
}

// TestOldRecordDecodes reads records written before the upstream fields
// existed, straight from the file, as GetObject, ListObjects and a
// client PutObject see them.
func TestOldRecordDecodes(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	old := Object{Name: "old.ics", UID: "u-old", Component: "VEVENT", ETag: etagOf([]byte("OLD")),
		Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Modified: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC),
		Revision: 7, Warnings: []string{"w"}, Data: []byte("OLD")}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		objs, err := createCalBucket(tx, bucketObjects, "alice", "work")
		if err != nil {
			return err
		}
		return objs.Put([]byte(old.Name), encodeObjectV1(&old))
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetObject("alice", "work", "old.ics")
	want := old
	want.Size = 3
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetObject(old record):\n got %+v, %v\nwant %+v", got, err, want)
	}
	list, err := s.ListObjects("alice", "work")
	if err != nil || len(list) != 1 || list[0].UpstreamHref != "" || list[0].Revision != 7 {
		t.Fatalf("ListObjects(old record) = %+v, %v", list, err)
	}
}
