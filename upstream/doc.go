// Package upstream mirrors calendars from upstream CalDAV servers and
// published .ics feeds into the cache, and pushes the local writes of
// mirrored CalDAV calendars back.
//
// A Source is one mirrored calendar: a CalDAVSource (RFC 4791, with
// sync-collection from RFC 6578 where the server has it) or an ICSSource
// (an iCalendar feed, RFC 5545, fetched with conditional GETs of RFC 9110
// and split into one object per UID). Each sync writes its changes and the
// source's new state (sync token, feed ETag) in one cache transaction.
// The Engine polls every source in its own goroutine, with backoff, and
// drains the outbox of writes through the sources that are Writers.
//
// Every request goes through the one *http.Client built by NewHTTPClient:
// bounded in time and size, with a redirect limit, never from https to
// http nor from a public address to a private one.
package upstream
