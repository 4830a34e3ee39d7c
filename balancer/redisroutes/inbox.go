package redisroutes

import (
	"strings"
	"sync"
)

// maxPendingKeys bounds the keys notified while the session is busy (a full
// sync of a large table); past it they are forgotten and one full sync
// catches up instead.
const maxPendingKeys = 100_000

// inbox collects what the pub/sub readers receive without ever blocking
// them: a reader that stops reading while the session goroutine is busy (a
// full resync of a million routes takes seconds) lets Redis's output buffer
// for the subscriber grow until Redis drops the connection
// (client-output-buffer-limit pubsub). Notified keys are a set (a key
// changed twice is read once); fleet health messages keep their order.
type inbox struct {
	sc   schema
	wake chan struct{} // capacity 1

	mu       sync.Mutex
	keys     map[string]struct{}
	health   []string
	overflow bool // keys were dropped: a full sync is due
}

func newInbox(sc schema) *inbox {
	return &inbox{sc: sc, wake: make(chan struct{}, 1), keys: make(map[string]struct{})}
}

// add files one message; it never blocks.
func (b *inbox) add(channel, payload string) {
	b.mu.Lock()
	if channel == healthChan {
		b.health = append(b.health, payload)
	} else if _, key, ok := strings.Cut(channel, "__:"); ok && b.sc.isRouteKey(key) {
		if len(b.keys) < maxPendingKeys {
			b.keys[key] = struct{}{}
		} else {
			b.overflow = true
		}
	} else {
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take returns and clears what was received.
func (b *inbox) take() (keys map[string]struct{}, health []string, overflow bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys, health, overflow = b.keys, b.health, b.overflow
	b.keys, b.health, b.overflow = make(map[string]struct{}), nil, false
	return keys, health, overflow
}

// takeHealth returns and clears the health messages received.
func (b *inbox) takeHealth() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.health
	b.health = nil
	return h
}
