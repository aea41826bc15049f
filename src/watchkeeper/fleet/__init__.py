"""The fleet view's engines: every host's state from its heartbeats and events, and the
fleet incidents that one alert on many hosts makes. Bus-free: the fleet agent feeds them.
"""
