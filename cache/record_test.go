package cache

import (
	"errors"
	"reflect"
	"testing"
	"time"
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
		// So is a header cut short with a consistent length prefix.
		for k := 1; k < hl; k++ {
			cut := append([]byte{0, 0, 0, byte(k)}, v[4:4+k]...)
			if _, err := decodeObject(o.Name, cut, false); !errors.Is(err, errCorrupt) {
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
