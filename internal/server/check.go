package server

// Check reports every problem of c, as New would before starting, without
// touching the data dir, the store or the network (signet doctor).
func (c Config) Check() error { return c.withDefaults().validate() }
