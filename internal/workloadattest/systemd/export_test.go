package systemd

import "github.com/godbus/dbus/v5"

// SetProcRoot points the attestor at a directory laid out like /proc.
func SetProcRoot(a *Attestor, dir string) { a.procRoot = dir }

// SetBus makes the attestor connect to the bus at address instead of the
// system bus.
func SetBus(a *Attestor, address string) {
	a.connect = func() (*dbus.Conn, error) { return dbus.Connect(address) }
}
