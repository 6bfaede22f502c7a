"""geoassist.data_recipes"""
