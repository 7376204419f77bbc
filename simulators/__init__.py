"""Simulated devices: physics of the city's equipment and weather, pure numpy, time as input."""
