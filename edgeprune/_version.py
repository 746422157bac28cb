"""The package version, in a module of its own so that modules deep inside can read it without importing the
package (whose API functions import them back)."""
__version__ = "0.1.0"
