package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portier/portier/internal/redistest"
)

// chromium finds a Chromium binary, skipping loudly without one unless
// PORTIER_REQUIRE_CHROMIUM=1 (CI installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return requireTool(t, "chromium", "CHROMIUM", "chromium")
}

// browser starts headless Chromium with a fresh profile and no network use
// of its own, and returns a tab's context.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	t.Cleanup(acancel)
	tab, tcancel := chromedp.NewContext(actx)
	t.Cleanup(tcancel)
	return tab
}

// TestStatusPageInBrowser loads the admin status page of a real portier in
// headless Chromium, reads backend states from the DOM, presses a drain
// button and sees the state change (in the page and in portier), checks
// that auto-refresh replaces the live part and that a phone-sized viewport
// does not scroll sideways, and saves a screenshot (docs/status.png with
// PORTIER_UPDATE_SCREENSHOT=1).
func TestStatusPageInBrowser(t *testing.T) {
	tab := browser(t, 1280, 1000)
	r := redistest.Start(t)
	web1 := startOpsBackend(t, "web1", nil)
	web2 := startOpsBackend(t, "web2", nil)
	// An address nothing listens on: the checks mark it down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	yml := fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
  - {name: secure, address: "127.0.0.1:0", protocol: tls}
routes:
  shop.example.test:
    balance: least_conn
    health: {check: http, path: /healthz, interval: 500ms, timeout: 400ms, rise: 1, fall: 1}
    backends: [http://%s, http://%s, http://%s]
  api.example.test: [http://%s]
loops: 1
admin: 127.0.0.1:0
health: {check: tcp, interval: 500ms, timeout: 400ms, rise: 1, fall: 1}
redis:
  url: %s
`, web1.addr, web2.addr, dead, web2.addr, r.URL())
	p := startRedisPortier(t, yml)
	admin := opsAdminAddr(t, p)
	r.Cli("RPUSH", "frontend:blog.example.test", "blog", "http://"+web1.addr)
	for range 20 {
		opsWant200(t, p.addr("web"), "api.example.test", "web2")
	}

	row := func(addr string) string { return `tr[data-backend="` + addr + `"] [data-state]` }
	state := func(addr string) string {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.AttributeValue(chromedp.CSS(row(addr)), "data-state"))
		if err != nil {
			t.Fatalf("state of %s: %v", addr, err)
		}
		return v.Value
	}
	// waitState reloads the page until addr shows want.
	waitState := func(addr, want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if err := chromedp.Do(tab, chromedp.Navigate("http://"+admin+"/"), chromedp.WaitVisible(chromedp.CSS(row(addr)))); err != nil {
				t.Fatalf("load status page: %v", err)
			}
			got := state(addr)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("backend %s is %q on the status page, want %q", addr, got, want)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	waitState(dead, "down")
	waitState(web1.addr, "up")
	waitLog(t, p, "routes updated from redis", 10*time.Second)

	// Press drain on web1: the form posts with the CSRF token and the page
	// comes back with web1 draining, and portier agrees.
	if err := chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`tr[data-backend="`+web1.addr+`"] button.drain`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-backend="`+web1.addr+`"] [data-state="draining"]`)),
	); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if got := state(web1.addr); got != "draining" {
		t.Fatalf("after drain: %s is %q", web1.addr, got)
	}
	for _, rt := range healthRoutes(t, admin) {
		for _, b := range rt.Backends {
			if b.Addr == web1.addr && !b.Draining {
				t.Errorf("/routes: %s of %s not draining after the button", b.Addr, rt.Name)
			}
		}
	}
	if got := state(web2.addr); got != "up" {
		t.Errorf("%s is %q, want up (only web1 was drained)", web2.addr, got)
	}

	// Auto-refresh swaps in a fresh #live within its 5 s period.
	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`document.getElementById('live').dataset.stale = '1'`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.WaitNotPresent(chromedp.CSS(`#live[data-stale]`))); err != nil {
		t.Errorf("auto-refresh did not replace the live part: %v", err)
	}

	// Some traffic since the last view, so that the rates show it.
	for range 30 {
		opsWant200(t, p.addr("web"), "api.example.test", "web2")
	}
	time.Sleep(1100 * time.Millisecond) // rates are taken over at least a second
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+admin+"/"), chromedp.WaitVisible(chromedp.CSS(row(web1.addr)))); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	savePNG(t, shot, "status.png")

	// A phone: nothing wider than the screen outside the scrolling tables.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Navigate("http://"+admin+"/"), chromedp.WaitVisible(chromedp.CSS(row(web1.addr)))); err != nil {
		t.Fatal(err)
	}
	over, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`))
	if err != nil || over > 0 {
		t.Errorf("phone viewport: page is %d px wider than the screen (%v)", over, err)
	}
	phone, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	savePNG(t, phone, "status-phone.png")
}

// savePNG checks that b is a PNG and writes it to the test's directory, and
// to docs/ with PORTIER_UPDATE_SCREENSHOT=1.
func savePNG(t *testing.T, b []byte, name string) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", name, err)
	}
	if sz := img.Bounds().Size(); sz.X < 300 || sz.Y < 300 {
		t.Fatalf("%s: %v is too small", name, sz)
	}
	dir := t.TempDir()
	if os.Getenv("PORTIER_UPDATE_SCREENSHOT") == "1" {
		dir = "../docs"
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%v)", path, img.Bounds().Size())
}
