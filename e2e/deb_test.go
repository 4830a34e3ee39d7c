package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDebianPackage builds the .deb with deploy/deb/build.sh (what make deb
// runs) and checks it without installing it (.ci/run installs and purges it
// on CI's fresh machine): control fields, the files and conffiles, the
// packaged unit's user and paths, the logrotate signal, maintainer scripts
// that parse, and the packaged binary accepting the packaged config.
func TestDebianPackage(t *testing.T) {
	requireTool(t, "dpkg-deb", "DPKG", "dpkg")
	out := t.TempDir()
	cmd := exec.Command("../deploy/deb/build.sh", portierBin, "1.2.3~test", out, "amd64")
	cmd.Env = append(os.Environ(), "DEB_COMPRESS=gzip") // xz takes ~30 s on a loaded 2-core machine
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	deb := filepath.Join(out, "portier_1.2.3~test_amd64.deb")
	if got := strings.TrimSpace(string(b)); got != deb {
		t.Fatalf("build.sh printed %q, want %q", got, deb)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		b, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	for field, want := range map[string]string{
		"Package": "portier", "Version": "1.2.3~test", "Architecture": "amd64", "Section": "net",
	} {
		if got := strings.TrimSpace(run("dpkg-deb", "--field", deb, field)); got != want {
			t.Errorf("control %s: %q, want %q", field, got, want)
		}
	}
	contents := run("dpkg-deb", "--contents", deb)
	for _, f := range []string{"./usr/bin/portier", "./lib/systemd/system/portier.service",
		"./etc/portier/portier.yaml", "./etc/logrotate.d/portier"} {
		if !strings.Contains(contents, " "+f+"\n") {
			t.Errorf("package lacks %s:\n%s", f, contents)
		}
	}
	if strings.Contains(contents, "./DEBIAN") {
		t.Errorf("package holds its control directory as data:\n%s", contents)
	}

	root := t.TempDir()
	run("dpkg-deb", "--extract", deb, root)
	ctl := filepath.Join(t.TempDir(), "DEBIAN")
	run("dpkg-deb", "--control", deb, ctl)
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(filepath.Join(ctl, "conffiles")); got != "/etc/portier/portier.yaml\n/etc/logrotate.d/portier\n" {
		t.Errorf("conffiles %q", got)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		run("sh", "-n", filepath.Join(ctl, s))
	}
	postinst := read(filepath.Join(ctl, "postinst"))
	if !strings.Contains(postinst, "adduser --system") || !strings.Contains(postinst, "useradd --system") {
		t.Error("postinst does not create the portier system user")
	}
	unit := read(filepath.Join(root, "lib/systemd/system/portier.service"))
	for _, want := range []string{"\nUser=portier\n", "\nGroup=portier\n",
		"\nExecStart=/usr/bin/portier -config /etc/portier/portier.yaml", "\nLogsDirectory=portier\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if strings.Contains(unit, "/usr/local/") || strings.Contains(unit, "DynamicUser") {
		t.Errorf("unit keeps make install's paths or DynamicUser:\n%s", unit)
	}
	if lr := read(filepath.Join(root, "etc/logrotate.d/portier")); !strings.Contains(lr, "kill -s USR1 portier.service") ||
		!strings.Contains(lr, "/var/log/portier/*.log") {
		t.Errorf("logrotate file does not send SIGUSR1 for /var/log/portier:\n%s", lr)
	}
	got := run(filepath.Join(root, "usr/bin/portier"), "-check", "-config", filepath.Join(root, "etc/portier/portier.yaml"))
	if !strings.Contains(got, ": ok (") {
		t.Errorf("packaged portier -check on the packaged config: %s", got)
	}
}
