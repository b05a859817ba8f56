"""Device discovery: sources of device paths and one supervised session per device."""
