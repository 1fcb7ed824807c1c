package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"medic/state"
)

// checkWorkerEnv makes the binary check one state file and exit: the child
// process of checkStateFile.
const checkWorkerEnv = "MEDIC_CHECK_STATE_FILE"

// exitLocked is what the check worker exits with when a running medic holds
// the file.
const exitLocked = 4

// checkWorker checks a state file and says how it went in its exit code.
func checkWorker(path string, stderr io.Writer) int {
	err := state.CheckFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, state.ErrLocked):
		return exitLocked
	case errors.Is(err, state.ErrCorrupt):
		return exitFailed
	}
	return exitError
}

func runStorageCheck(path string, stdout, stderr io.Writer) int {
	err := checkStateFile(path)
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s: OK\n", path)
		return exitOK
	case errors.Is(err, state.ErrCorrupt):
		fmt.Fprintf(stderr, "medic: %v\nrestore the last backup (GET /api/v1/admin/backup) in its place, or move it away to start empty\n", err)
		return exitFailed
	}
	fmt.Fprintf(stderr, "medic: %v\n", err)
	return exitError
}

// checkStateFile checks an existing state file in a child process: bbolt
// can panic or fault (SIGBUS past a truncated end) on a damaged file, and
// that must end the check, not medic. A crash is damage too. A file that a
// running medic holds is state.ErrLocked.
func checkStateFile(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding medic's own binary to check the state file: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), checkWorkerEnv+"="+path)
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	first, _, _ := strings.Cut(msg, "\n")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ee):
		return fmt.Errorf("running the state file check: %w", err)
	case ee.ExitCode() == exitLocked:
		return fmt.Errorf("%s: %w", path, state.ErrLocked)
	case ee.ExitCode() == exitFailed:
		// CheckFile's error, which began with ErrCorrupt's text.
		return fmt.Errorf("%w: %s", state.ErrCorrupt, strings.TrimPrefix(msg, state.ErrCorrupt.Error()+": "))
	}
	// A panic or a fault: the first line says what broke.
	return fmt.Errorf("%w: %s: reading it crashed the check (%s): %s", state.ErrCorrupt, path, ee.ProcessState, first)
}
