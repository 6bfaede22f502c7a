"""geoassist.app"""
