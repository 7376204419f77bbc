"""The smartcity command line and what it needs to run the platform on one machine."""
