"""geoassist.train"""
