package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// An object record in bucketObjects is
//
//	[4-byte big-endian header length][header][raw data]
//
// so that listing objects decodes only the header, straight from the
// mmap'd value, without copying the data. The header is a compact binary
// encoding:
//
//	version byte (recordVersion)
//	uid, component, etag        uvarint length + bytes each
//	start, end, modified        time (see appendTime)
//	revision                    uvarint
//	warnings                    uvarint count, then uvarint length + bytes each
//	upstream href, upstream etag  uvarint length + bytes each (added later)
//	flags                       uvarint: flagExact (added later)
//
// Fields added later go at the end, and their decoder must treat a missing
// trailing field as its zero value, so older records stay readable (and
// older decoders ignore the bytes they do not know). Fields added together
// form a group that is present or absent as a whole, so a header cut inside
// a group is still detected as corrupt.

// recordVersion is the first byte of an object record header.
const recordVersion = 1

// Bits of the flags field of an object record header.
const (
	flagExact = 1 << iota // Object.Exact
)

// changeOp is the first byte of a change-log value; the name follows.
type changeOp byte

const (
	opPut    changeOp = 'P'
	opDelete changeOp = 'D'
)

// errCorrupt is wrapped by decoding errors of stored records.
var errCorrupt = errors.New("corrupt record")

// etagOf returns the strong entity tag of data, without quotes: lowercase
// hex of the first 16 bytes of its SHA-256.
func etagOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// revKey returns the change-log key of revision rev.
func revKey(rev uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), rev)
}

// encodeChange returns the change-log value of op on name.
func encodeChange(op changeOp, name string) []byte {
	v := make([]byte, 0, 1+len(name))
	v = append(v, byte(op))
	return append(v, name...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendTime appends t as a uvarint flag (0 for the zero time, 1 otherwise)
// followed, if set, by varint Unix seconds and uvarint nanoseconds.
// The location is not kept: times decode in UTC.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// encodeObject returns the record of o (Name and Size are not stored:
// the name is the key, the size follows from the record's length).
func encodeObject(o *Object) []byte {
	n := 1 + 5*binary.MaxVarintLen64 + len(o.UID) + len(o.Component) + len(o.ETag) +
		len(o.UpstreamHref) + len(o.UpstreamETag) +
		3*(1+binary.MaxVarintLen64+binary.MaxVarintLen32) + 3*binary.MaxVarintLen64
	for _, w := range o.Warnings {
		n += binary.MaxVarintLen64 + len(w)
	}
	b := make([]byte, 4, 4+n+len(o.Data))
	b = append(b, recordVersion)
	b = appendString(b, o.UID)
	b = appendString(b, o.Component)
	b = appendString(b, o.ETag)
	b = appendTime(b, o.Start)
	b = appendTime(b, o.End)
	b = appendTime(b, o.Modified)
	b = binary.AppendUvarint(b, o.Revision)
	b = binary.AppendUvarint(b, uint64(len(o.Warnings)))
	for _, w := range o.Warnings {
		b = appendString(b, w)
	}
	b = appendString(b, o.UpstreamHref)
	b = appendString(b, o.UpstreamETag)
	var flags uint64
	if o.Exact {
		flags |= flagExact
	}
	b = binary.AppendUvarint(b, flags)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return append(b, o.Data...)
}

// reader decodes a header. Strings are substrings of str, one copy of the
// whole header, so decoding allocates once for all of them. The first
// error sticks and later reads return zero values.
type reader struct {
	b   []byte // the header; may point into the mmap
	str string // a copy of b
	off int    // bytes of b consumed
	err error
}

func newReader(hdr []byte) reader {
	return reader{b: hdr, str: string(hdr)}
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.off = len(r.b)
}

// more reports whether unread bytes remain: whether an optional trailing
// group of fields is present.
func (r *reader) more() bool {
	return r.err == nil && r.off < len(r.b)
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.off += n
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)-r.off) {
		r.fail()
		return ""
	}
	s := r.str[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) time() time.Time {
	switch r.uvarint() {
	case 0:
		return time.Time{}
	case 1:
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			r.fail()
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		r.fail()
		return time.Time{}
	}
}

// decodeObject decodes the record v of object name. v may point into the
// mmap: every returned field is a copy. Data is filled only if withData.
func decodeObject(name string, v []byte, withData bool) (Object, error) {
	o, data, err := decodeHeader(name, v)
	if err == nil && withData {
		o.Data = cloneData(data)
	}
	return o, err
}

// cloneData copies data out of the mmap; empty data gives an empty,
// non-nil slice.
func cloneData(data []byte) []byte {
	return append(make([]byte, 0, len(data)), data...)
}

// decodeHeader decodes the header of the record v of object name, copying
// every field, and returns the data part of v uncopied (it may point into
// the mmap and is valid only during the transaction).
func decodeHeader(name string, v []byte) (Object, []byte, error) {
	if len(v) < 4 {
		return Object{}, nil, fmt.Errorf("cache: object %q: %w: short record", name, errCorrupt)
	}
	hl := uint64(binary.BigEndian.Uint32(v))
	if hl == 0 || hl > uint64(len(v)-4) {
		return Object{}, nil, fmt.Errorf("cache: object %q: %w: header length %d of %d", name, errCorrupt, hl, len(v)-4)
	}
	hdr, data := v[4:4+hl], v[4+hl:]
	if hdr[0] != recordVersion {
		return Object{}, nil, fmt.Errorf("cache: object %q: %w: header version %d", name, errCorrupt, hdr[0])
	}
	r := newReader(hdr[1:])
	o := Object{Name: name, Size: int64(len(data))}
	o.UID = r.string()
	o.Component = r.string()
	o.ETag = r.string()
	o.Start = r.time()
	o.End = r.time()
	o.Modified = r.time()
	o.Revision = r.uvarint()
	if n := r.uvarint(); n > 0 {
		if n > uint64(len(r.b)-r.off) { // each warning takes at least one byte
			r.fail()
		} else {
			o.Warnings = make([]string, n)
			for i := range o.Warnings {
				o.Warnings[i] = r.string()
			}
		}
	}
	if r.more() { // absent in records written before the upstream fields
		o.UpstreamHref = r.string()
		o.UpstreamETag = r.string()
	}
	if r.more() { // absent in records written before the flags
		o.Exact = r.uvarint()&flagExact != 0
	}
	if r.err != nil {
		return Object{}, nil, fmt.Errorf("cache: object %q: %w: bad header", name, r.err)
	}
	return o, data, nil
}
