"""geoassist.eval"""
