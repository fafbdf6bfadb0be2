package feed_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
	"github.com/calgate/calgate/ical"
)

// A Renderer gives Render's bytes; after a change it transforms only the
// objects that changed.
func ExampleRenderer() {
	dir, err := os.MkdirTemp("", "calgate-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	store, err := cache.Open(filepath.Join(dir, "calgate.db"), cache.Options{})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	if _, err := store.CreateCalendar(cache.Calendar{User: "alice", ID: "work"}); err != nil {
		panic(err)
	}
	put := func(name, summary string) {
		data := []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//example//EN\r\nBEGIN:VEVENT\r\nUID:" + name +
			"\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\nDTEND:20260105T091500Z\r\nSUMMARY:" + summary +
			"\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
		c, err := ical.Parse(data)
		if err != nil {
			panic(err)
		}
		info, err := new(ical.Zones).Inspect(c)
		if err != nil {
			panic(err)
		}
		if _, _, err := store.PutObject("alice", "work", cache.Object{Name: name, UID: info.UID, Component: info.Component,
			Start: info.Start, End: info.End, Data: data}, cache.PutConditions{}); err != nil {
			panic(err)
		}
	}
	put("standup", "Stand-up")
	put("review", "Review")

	spec := feed.Spec{Name: "work", Members: []feed.Member{{User: "alice", Cal: "work", Prefix: "[Work] "}}}
	var r feed.Renderer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first, err := r.Render(store, nil, spec, now)
	if err != nil {
		panic(err)
	}
	put("standup", "Stand-up\\, moved") // only this object is read and transformed again
	again, err := r.Render(store, nil, spec, now)
	if err != nil {
		panic(err)
	}
	want, err := feed.Render(store, nil, spec, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(bytes.Equal(again.Body, want), again.Sum != first.Sum)
	for _, l := range strings.Split(string(again.Body), "\r\n") {
		if strings.HasPrefix(l, "SUMMARY") {
			fmt.Println(l)
		}
	}
	// Output:
	// true true
	// SUMMARY:[Work] Review
	// SUMMARY:[Work] Stand-up\, moved
}
