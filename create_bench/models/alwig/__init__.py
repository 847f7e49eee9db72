"""models/alwig"""
